import type { Context, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../lib/types";

/**
 * CORS for browser clients. Allowed origins come from the `CORS_ORIGINS` var (comma-separated;
 * `*` allows any). No cookies are involved (bearer tokens), so credentials are never allowed.
 * Clients may read the headers the API documents: request id, rate limits, idempotent replays.
 */
export const corsHeaders: MiddlewareHandler<AppEnv> = cors({
  origin: (origin, c) => {
    const allowed = (c as Context<AppEnv>).var.config.corsOrigins;
    if (allowed.includes("*")) return "*";
    return allowed.includes(origin) ? origin : null;
  },
  allowMethods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
  allowHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
  exposeHeaders: [
    "X-Request-Id",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Idempotent-Replayed",
  ],
  maxAge: 600,
});
