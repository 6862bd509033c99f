import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import type { RateLimitDecision } from "../lib/sliding-window";

/**
 * The limits of API.md §1, each from its var (see wrangler.toml), counted exactly by a
 * RateLimiterDO per `<scope>:<key>` (a sliding minute; X-RateLimit-* headers):
 * - `authIp`: register/login/refresh/password-change requests per client address (generous:
 *   carrier NAT shares addresses);
 * - `password`: password changes per account, at the sign-in limit (a signed-in caller guessing
 *   the current password is limited like a sign-in);
 * - `messages` / `transfers`: sends per user;
 * - `replays`: per user, the allowance a request carrying an `Idempotency-Key` draws on once the
 *   user's coarse budget is used up (a client retrying a lost answer still reaches its stored
 *   outcome; finite, so a replay loop meets 429 too);
 * - `groupAdds`: people a user adds to groups (creation's `memberIds` and every add), per user;
 * - sign-in (`countSignInAttempt`): failed sign-ins per email and client address together, and
 *   per email alone with a higher ceiling, so a stranger's wrong guesses from one address do not
 *   lock the owner out from another; only guesses spread over many addresses reach the ceiling,
 *   and a sign-in with a device token of an earlier sign-in is counted per token instead of there.
 *
 * The coarse budgets on every route (`withinAddressBudget`, `withinUserBudget`) are Cloudflare's Rate Limiting binding
 * instead: no object round trip, but it answers only allowed/denied, hence no X-RateLimit-* there.
 */
export type RateLimitScope = "authIp" | "password" | "messages" | "transfers" | "replays" | "groupAdds";
type CounterScope = RateLimitScope | "signInAddress" | "signInEmail" | "signInDevice";

const LIMIT_OF: Record<CounterScope, (limits: Config["rateLimits"]) => number> = {
  authIp: (limits) => limits.authIpPerMinute,
  password: (limits) => limits.loginPerMinute,
  messages: (limits) => limits.messagesPerMinute,
  transfers: (limits) => limits.transfersPerMinute,
  replays: (limits) => limits.replaysPerMinute,
  groupAdds: (limits) => limits.groupAddsPerMinute,
  signInAddress: (limits) => limits.loginPerMinute,
  signInEmail: (limits) => limits.loginEmailPerMinute,
  signInDevice: (limits) => limits.loginPerMinute,
};

/** The headers every limited response carries (allowed or not). */
export const RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"] as const;
export type RateLimitHeaders = Record<(typeof RATE_LIMIT_HEADERS)[number], string>;

const limiterOf = (env: Env, scope: CounterScope, key: string) =>
  env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${scope}:${key}`));

/** Gives back one request counted at `at` (epoch ms, taken just before `enforceRateLimit`) that turned out not to count. */
export async function refundRateLimit(env: Env, scope: CounterScope, key: string, at: number): Promise<void> {
  await limiterOf(env, scope, key).refund(at);
}

export function rateLimitHeadersOf(decision: RateLimitDecision): RateLimitHeaders {
  return {
    "X-RateLimit-Limit": String(decision.limit),
    "X-RateLimit-Remaining": String(decision.remaining),
    "X-RateLimit-Reset": String(decision.resetSeconds),
  };
}

/** Counts one request (of `cost` units) against `<scope>:<key>`; over the limit, throws 429 `rate_limited` with `Retry-After` and X-RateLimit-*. */
async function hitOrRefuse(env: Env, config: Config, scope: CounterScope, key: string, cost = 1): Promise<RateLimitDecision> {
  const decision = await limiterOf(env, scope, key).hit(LIMIT_OF[scope](config.rateLimits), undefined, cost);
  if (!decision.allowed) {
    throw new ApiError(
      "rate_limited",
      [`Rate limit of ${decision.limit} per minute reached; retry in ${decision.resetSeconds} s`],
      { ...rateLimitHeadersOf(decision), "Retry-After": String(decision.resetSeconds) },
    );
  }
  return decision;
}

/**
 * Counts one request against `<scope>:<key>` in its RateLimiterDO and answers the
 * `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds) headers to send;
 * over the limit it throws 429 `rate_limited` carrying those and `Retry-After`. Call it after
 * authentication and validation, before any work, so a refused request changes nothing.
 */
export async function enforceRateLimit(
  env: Env,
  config: Config,
  scope: RateLimitScope,
  key: string,
  cost = 1,
): Promise<RateLimitHeaders> {
  return rateLimitHeadersOf(await hitOrRefuse(env, config, scope, key, cost));
}

/** A sign-in attempt counted as failed; `forgive` gives it back once it turns out not to be one. */
export type SignInAttempt = { decision: RateLimitDecision; forgive(): Promise<void> };

/**
 * Counts a sign-in attempt as failed BEFORE the password is checked, per email + client address
 * (`RATE_LIMIT_LOGIN_PER_MINUTE`) and, without a device token, per email alone
 * (`RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE`), so guesses sent all at once cannot race past the limits;
 * the caller forgives a right password. With a verified device token (`deviceId`: lib/device-token.ts)
 * the second count is per email + device at the per-address limit instead: the per-email ceiling
 * that strangers' guesses fill never refuses the owner's own device, and a stolen token gets no
 * more guesses than one address. Over either limit: 429 (the other count is given back).
 * `decision` is the one closer to its limit.
 */
export async function countSignInAttempt(
  env: Env,
  config: Config,
  email: string,
  address: string,
  deviceId: string | null = null,
): Promise<SignInAttempt> {
  const at = Date.now();
  const pairKey = `${email} ${address}`;
  const [scope, key]: [CounterScope, string] =
    deviceId === null ? ["signInEmail", email] : ["signInDevice", `${email} ${deviceId}`];
  const pair = await hitOrRefuse(env, config, "signInAddress", pairKey);
  let second: RateLimitDecision;
  try {
    second = await hitOrRefuse(env, config, scope, key);
  } catch (error) {
    await refundRateLimit(env, "signInAddress", pairKey, at).catch(() => undefined);
    throw error;
  }
  return {
    decision: second.remaining < pair.remaining ? second : pair,
    forgive: async () => {
      await Promise.all([refundRateLimit(env, "signInAddress", pairKey, at), refundRateLimit(env, scope, key, at)]);
    },
  };
}

/** The coarse budgets: Cloudflare Rate Limiting bindings, their limits in wrangler.toml `[[ratelimits]]`. */
export type Budget = "user" | "address";

/** The period of both bindings (wrangler.toml; test/deploy-safety.test.ts holds every environment to it). */
export const BUDGET_PERIOD_SECONDS = 60;

/** Counts one request against the budget of the client address; false when it is used up. */
export async function withinAddressBudget(env: Env, address: string): Promise<boolean> {
  return (await env.ADDRESS_BUDGET.limit({ key: `address:${address}` })).success;
}

/** Counts one request against the budget of a signed-in user; false when it is used up. */
export async function withinUserBudget(env: Env, userId: string): Promise<boolean> {
  return (await env.USER_BUDGET.limit({ key: `user:${userId}` })).success;
}

/**
 * 429 for an exhausted budget. The binding does not say when its window ends, so `Retry-After` is
 * the whole period: by then the count has surely started over.
 */
export function budgetExhausted(budget: Budget): ApiError {
  const whose = budget === "user" ? "this account" : "this client address";
  return new ApiError("rate_limited", [`Request budget of ${whose} reached; retry in ${BUDGET_PERIOD_SECONDS} s`], {
    "Retry-After": String(BUDGET_PERIOD_SECONDS),
  });
}
