import { sha256 } from "hono/utils/crypto";
import { ApiError } from "./errors";

/**
 * The `Idempotency-Key` primitives every idempotent operation shares (API.md §1), whichever
 * object keeps its outcome: the chat object for message sends, the wallet object for credit
 * transfers and admin grants (services/idempotency.ts says where keys are registered). One retention, one key format, one fingerprint.
 */

/** Keys and their stored outcomes are kept at least this long (API.md: at least 24 h), then purged. */
export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;

export const IDEMPOTENCY_HEADER = "Idempotency-Key";
export const REPLAYED_HEADER = "Idempotent-Replayed";

const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;

/** The header's value, or undefined when absent; 400 `validation_failed` unless 1..255 printable ASCII. */
export function parseIdempotencyKey(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!KEY_PATTERN.test(raw)) {
    throw new ApiError("validation_failed", [`${IDEMPOTENCY_HEADER}: must be 1 to 255 printable ASCII characters`]);
  }
  return raw;
}

/**
 * JSON with object keys sorted at every depth, so key order does not change the fingerprint.
 * Members whose value is null are left out like absent ones: every optional request field
 * accepts null as "absent", so `{"note": null}` and `{}` are the same request.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** SHA-256 of method, path and canonical body: what "the same request" means for a key. */
export async function requestFingerprint(method: string, path: string, body: unknown): Promise<string> {
  const digest = await sha256(`${method.toUpperCase()} ${path}\n${canonicalJson(body)}`);
  if (digest === null) throw new Error("SHA-256 is unavailable (no crypto.subtle)");
  return digest;
}
