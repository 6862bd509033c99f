import type { Context } from "hono";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import type { AppEnv } from "../lib/types";

/**
 * The limits of API.md §1, each from its var (see wrangler.toml):
 * - `login`: sign-in attempts per email (every attempt counts, successful or not);
 * - `authIp`: register/login/refresh requests per client IP (generous: carrier NAT shares addresses);
 * - `messages` / `transfers`: sends per user.
 */
export type RateLimitScope = "login" | "authIp" | "messages" | "transfers";

const LIMIT_OF: Record<RateLimitScope, (limits: Config["rateLimits"]) => number> = {
  login: (limits) => limits.loginPerMinute,
  authIp: (limits) => limits.authIpPerMinute,
  messages: (limits) => limits.messagesPerMinute,
  transfers: (limits) => limits.transfersPerMinute,
};

/** The client address Cloudflare saw; requests without one (local tools) share one bucket. */
export function clientIp(c: Context<AppEnv>): string {
  return c.req.header("CF-Connecting-IP")?.trim() || "unknown";
}

/**
 * Counts one request against `<scope>:<key>` in its RateLimiterDO. Sets `X-RateLimit-Limit`,
 * `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds) on the response either way; over the
 * limit throws 429 `rate_limited` with `Retry-After` too. Call it after authentication and
 * validation, before any work, so a refused request changes nothing.
 */
export async function enforceRateLimit(c: Context<AppEnv>, scope: RateLimitScope, key: string): Promise<void> {
  const limit = LIMIT_OF[scope](c.var.config.rateLimits);
  const stub = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(`${scope}:${key}`));
  const decision = await stub.hit(limit);
  const headers: Record<string, string> = {
    "X-RateLimit-Limit": String(decision.limit),
    "X-RateLimit-Remaining": String(decision.remaining),
    "X-RateLimit-Reset": String(decision.resetSeconds),
  };
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
  if (!decision.allowed) {
    throw new ApiError(
      "rate_limited",
      [`Rate limit of ${decision.limit} per minute reached; retry in ${decision.resetSeconds} s`],
      {
        ...headers,
        "Retry-After": String(decision.resetSeconds),
      },
    );
  }
}
