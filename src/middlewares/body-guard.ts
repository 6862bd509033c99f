import type { MiddlewareHandler } from "hono";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "../lib/types";

export const MAX_BODY_BYTES = 64 * 1024;
/**
 * Objects and arrays nested deeper than this are refused (400) before anything reads the body:
 * every request body the API defines nests 3 levels at most, and what reads a body recursively
 * (the Idempotency-Key fingerprint's canonical JSON, the validators) would otherwise run out of
 * stack on 64 KiB of `[[[[…` and answer 500.
 */
export const MAX_JSON_DEPTH = 64;
const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Reads a request body once, before auth and validation: over 64 KiB → 413 (counted on the bytes
 * actually read, whatever Content-Length claims), not JSON → 415, unparsable → 400 malformed_json.
 * The parsed body is left in Hono's body cache, so validators do not read the stream again.
 */
export const bodyGuard: MiddlewareHandler<AppEnv> = async (c, next) => {
  const raw = c.req.raw;
  if (!raw.body || raw.method === "GET" || raw.method === "HEAD") return next();

  const declared = Number(raw.headers.get("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw tooLarge();

  const bytes = await readAtMost(raw.body, MAX_BODY_BYTES);
  if (bytes === null) throw tooLarge();
  if (bytes.byteLength === 0 && !raw.headers.get("Content-Type")) {
    // The stream is consumed now: later readers (an optional-body route's media-type check) get "".
    c.req.bodyCache.text = Promise.resolve("") as unknown as string;
    return next();
  }

  const contentType = raw.headers.get("Content-Type") ?? "";
  if (!JSON_MEDIA_TYPE.test(contentType)) {
    throw new ApiError("unsupported_media_type", [
      `Content-Type must be application/json (got ${contentType ? JSON.stringify(contentType.slice(0, 100)) : "none"})`,
    ]);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError("malformed_json", ["The request body is not valid JSON"]);
  }
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw new ApiError("validation_failed", [`body: objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels`]);
  }
  try {
    JSON.parse(text);
  } catch {
    throw new ApiError("malformed_json", ["The request body is not valid JSON"]);
  }
  // Hono keeps body promises in this cache (its type says plain values); req.json() parses the text again.
  c.req.bodyCache.text = Promise.resolve(text) as unknown as string;
  await next();
};

/**
 * Whether the brackets of JSON `text` (outside its strings) open more than `max` levels at once:
 * one pass, no recursion, so it is safe on any input, valid JSON or not.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i += 1; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      depth += 1;
      if (depth > max) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth -= 1;
  }
  return false;
}

function tooLarge() {
  return new ApiError("payload_too_large", [`Request bodies are limited to ${MAX_BODY_BYTES} bytes`]);
}

/** The whole stream, or null as soon as it passes `limit` bytes (the rest is never buffered). */
async function readAtMost(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | null> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
