import type { Context, MiddlewareHandler } from "hono";
import { getConfig } from "../lib/config";
import type { AppEnv } from "../lib/types";

/**
 * The headers every response carries, set in one place on the response the app finally sends:
 * - `X-Request-Id`: the server's own id for this request (a new UUID), `c.var.requestId`: what log
 *   lines and the audit log record, so no client can choose (or collide with) another request's id.
 *   A sane id the client sent (word characters, `-` and `=`, at most 128) is kept beside it as
 *   `c.var.clientRequestId`, written into log lines as `clientRequestId` for the caller's correlation;
 * - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and `Cache-Control: no-store`
 *   unless the route chose its own: API answers are never cached by browsers or proxies;
 * - `Strict-Transport-Security` in production only;
 * - CORS for browser clients. Allowed origins come from the `CORS_ORIGINS` var (comma-separated;
 *   `*` allows any). No cookies are involved (bearer tokens), so credentials are never allowed.
 *   Clients may read the headers the API documents: request id, rate limits, idempotent replays.
 *   A preflight (`OPTIONS`) is answered here, 204, before any route.
 *
 * Why not Hono's requestId and cors middlewares and `c.header()`: once a response exists, every
 * `c.header()` copies the whole Response, and Hono's cors makes a placeholder Response before the
 * route runs that is merged into the real one: six Response copies per request, the largest cost
 * of `/health` (bench/README.md). Here the headers are set in place; the response is copied once
 * only when its headers are immutable (one passed through from an object's fetch, such as the
 * realtime upgrade).
 */
const MAX_REQUEST_ID_LENGTH = 128;
const UNSAFE_REQUEST_ID = /[^\w\-=]/;

const ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,OPTIONS";
const ALLOW_HEADERS = "Authorization,Content-Type,Idempotency-Key,X-Request-Id";
const EXPOSE_HEADERS = "X-Request-Id,Retry-After,X-RateLimit-Limit,X-RateLimit-Remaining,X-RateLimit-Reset,Idempotent-Replayed";
const PREFLIGHT_MAX_AGE_SECONDS = "600";
// No includeSubDomains: the Worker does not own its domain's other hosts (workers.dev, or a custom domain's siblings).
const HSTS = "max-age=31536000";

function clientRequestIdOf(sent: string | undefined): string | undefined {
  return sent && sent.length <= MAX_REQUEST_ID_LENGTH && !UNSAFE_REQUEST_ID.test(sent) ? sent : undefined;
}

/** The `Access-Control-Allow-Origin` for `origin`, or null when it is not allowed. */
function allowedOrigin(corsOrigins: readonly string[], origin: string): string | null {
  if (corsOrigins.includes("*")) return "*";
  return origin !== "" && corsOrigins.includes(origin) ? origin : null;
}

/** The final response with headers that can be set: itself, or (immutable headers) one copy put in its place. */
function writableResponse(c: Context<AppEnv>): Response {
  const response = c.res;
  try {
    response.headers.set("X-Content-Type-Options", "nosniff");
    return response;
  } catch {
    const copy = new Response(response.body, response);
    // Hono's `res` setter merges the old response's headers into a new one; clearing it first
    // puts the copy in place as it is.
    c.res = undefined as unknown as Response;
    c.res = copy;
    return copy;
  }
}

export const responseHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  const requestId = crypto.randomUUID();
  c.set("requestId", requestId);
  c.set("clientRequestId", clientRequestIdOf(c.req.header("X-Request-Id")));
  const preflight = c.req.method === "OPTIONS";
  if (preflight) c.res = new Response(null, { status: 204 });
  else await next();

  const headers = writableResponse(c).headers;
  headers.set("X-Content-Type-Options", "nosniff");
  headers.set("Referrer-Policy", "no-referrer");
  if (!headers.has("Cache-Control")) headers.set("Cache-Control", "no-store");
  headers.set("X-Request-Id", requestId);

  // The config is set by requestContext; a preflight does not get that far, and a request whose
  // config did not parse has answered 500 without it (and gets no CORS headers).
  const config = preflight ? getConfig(c.env) : c.var.config;
  if (!config) return;
  // Production only: a browser that saw it refuses plain HTTP to this host for a year. Dev and
  // local may be served over http://127.0.0.1, which HSTS would break for every local tool.
  if (config.environment === "production") headers.set("Strict-Transport-Security", HSTS);
  const allowOrigin = allowedOrigin(config.corsOrigins, c.req.header("Origin") ?? "");
  if (allowOrigin) headers.set("Access-Control-Allow-Origin", allowOrigin);
  headers.set("Access-Control-Expose-Headers", EXPOSE_HEADERS);
  if (allowOrigin !== "*") headers.append("Vary", "Origin");
  if (preflight) {
    headers.set("Access-Control-Max-Age", PREFLIGHT_MAX_AGE_SECONDS);
    headers.set("Access-Control-Allow-Methods", ALLOW_METHODS);
    headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS);
    headers.append("Vary", "Access-Control-Request-Headers");
  }
};
