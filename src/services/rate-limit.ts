import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";

/**
 * The limits of API.md §1, each from its var (see wrangler.toml):
 * - `login`: sign-in attempts per email (every attempt counts, successful or not);
 * - `authIp`: register/login/refresh/password-change requests per client IP (generous: carrier NAT
 *   shares addresses);
 * - `password`: password changes per account, at the sign-in limit (a signed-in caller guessing
 *   the current password is limited like a sign-in);
 * - `messages` / `transfers`: sends per user.
 */
export type RateLimitScope = "login" | "authIp" | "password" | "messages" | "transfers";

const LIMIT_OF: Record<RateLimitScope, (limits: Config["rateLimits"]) => number> = {
  login: (limits) => limits.loginPerMinute,
  authIp: (limits) => limits.authIpPerMinute,
  password: (limits) => limits.loginPerMinute,
  messages: (limits) => limits.messagesPerMinute,
  transfers: (limits) => limits.transfersPerMinute,
};

/** The headers every limited response carries (allowed or not). */
export const RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"] as const;
export type RateLimitHeaders = Record<(typeof RATE_LIMIT_HEADERS)[number], string>;

/** The client address Cloudflare saw (`CF-Connecting-IP`); requests without one (local tools) share one bucket. */
export function clientIp(connectingIp: string | undefined): string {
  return connectingIp?.trim() || "unknown";
}

const limiterOf = (env: Env, scope: RateLimitScope, key: string) =>
  env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${scope}:${key}`));

/** Gives back one request counted at `at` (epoch ms, taken just before `enforceRateLimit`) that turned out not to count. */
export async function refundRateLimit(env: Env, scope: RateLimitScope, key: string, at: number): Promise<void> {
  await limiterOf(env, scope, key).refund(at);
}

/**
 * Counts one request against `<scope>:<key>` in its RateLimiterDO and answers the
 * `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds) headers to send;
 * over the limit it throws 429 `rate_limited` carrying those and `Retry-After`. Call it after
 * authentication and validation, before any work, so a refused request changes nothing.
 */
export async function enforceRateLimit(env: Env, config: Config, scope: RateLimitScope, key: string): Promise<RateLimitHeaders> {
  const limit = LIMIT_OF[scope](config.rateLimits);
  const decision = await limiterOf(env, scope, key).hit(limit);
  const headers: RateLimitHeaders = {
    "X-RateLimit-Limit": String(decision.limit),
    "X-RateLimit-Remaining": String(decision.remaining),
    "X-RateLimit-Reset": String(decision.resetSeconds),
  };
  if (!decision.allowed) {
    throw new ApiError(
      "rate_limited",
      [`Rate limit of ${decision.limit} per minute reached; retry in ${decision.resetSeconds} s`],
      { ...headers, "Retry-After": String(decision.resetSeconds) },
    );
  }
  return headers;
}
