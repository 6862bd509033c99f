import { tryGetContext } from "hono/context-storage";
import type { AppEnv } from "./types";

/**
 * The one logger: a JSON line per event, `{level, event, requestId?, clientRequestId?, ...fields}`, on the console
 * method of its level, so `wrangler tail` and Workers Logs index it. The request id is read from
 * the request being served (Hono's context storage, installed first by the app), so services log
 * it without being handed a Context; outside a request (alarms, the cron, objects) it is absent.
 *
 * Logs keep secrets: an Error among the fields is written as `{name, message, cause, stack}` with
 * every bound parameter stripped. Drizzle puts a failed query's parameters in its message
 * (`Failed query: …\nparams: <email>,<password hash>,…`) and D1 quotes an unsupported value in
 * its own, and an error's stack repeats its message: so a failed insert would otherwise log the
 * email, password hash, message text or token it carried. Callers pass ids, never those values.
 */
type Level = "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

const CONSOLE: Record<Level, (line: string) => void> = {
  info: (line) => console.log(line),
  warn: (line) => console.warn(line),
  error: (line) => console.error(line),
};

/** How deep a chain of causes is followed (a cycle or a long chain stops here). */
const MAX_CAUSE_DEPTH = 4;

/** A message with bound values cut out: Drizzle's `params: …` tail and D1's `for value '…'`. */
export function scrubMessage(message: string): string {
  return message.replace(/\nparams:[\s\S]*$/, "").replace(/(for value )'[\s\S]*?'/g, "$1<redacted>");
}

/** An error as log fields, its messages scrubbed; the stack keeps only its frames (its first lines repeat the message). */
export function errorFields(error: unknown, depth = 0): Record<string, unknown> | string {
  if (!(error instanceof Error)) return scrubMessage(String(error));
  const frames = (error.stack ?? "")
    .split("\n")
    .filter((line) => /^\s+at /.test(line))
    .join("\n");
  return {
    name: error.name,
    message: scrubMessage(error.message),
    ...(error.cause !== undefined && depth < MAX_CAUSE_DEPTH ? { cause: errorFields(error.cause, depth + 1) } : {}),
    ...(frames ? { stack: frames } : {}),
  };
}

function write(level: Level, event: string, fields: LogFields = {}): void {
  const context = tryGetContext<AppEnv>()?.var;
  const requestId = context?.requestId;
  const entry: Record<string, unknown> = { level, event };
  if (requestId) entry.requestId = requestId;
  if (context?.clientRequestId) entry.clientRequestId = context.clientRequestId;
  for (const [name, value] of Object.entries(fields)) entry[name] = value instanceof Error ? errorFields(value) : value;
  let line: string;
  try {
    line = JSON.stringify(entry);
  } catch {
    // A field that does not serialize (a cycle, a BigInt) must not turn a log call into a crash.
    line = JSON.stringify({ level, event, ...(requestId ? { requestId } : {}), unserializable: Object.keys(fields) });
  }
  CONSOLE[level](line);
}

export const log = {
  info: (event: string, fields?: LogFields) => write("info", event, fields),
  warn: (event: string, fields?: LogFields) => write("warn", event, fields),
  error: (event: string, fields?: LogFields) => write("error", event, fields),
};
