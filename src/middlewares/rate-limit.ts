import type { Context, MiddlewareHandler } from "hono";
import { clientAddress } from "../lib/client-address";
import { verifiedDeviceId } from "../lib/device-token";
import { ApiError } from "../lib/errors";
import { IDEMPOTENCY_HEADER } from "../lib/idempotency";
import type { AppEnv, RouteStep } from "../lib/types";
import {
  budgetExhausted,
  countSignInAttempt,
  enforceRateLimit,
  type RateLimitScope,
  rateLimitHeadersOf,
  withinAddressBudget,
  withinUserBudget,
} from "../services/rate-limit";
import { currentUser } from "./auth";

const addressOf = (c: Context<AppEnv>) => clientAddress(c.req.header("CF-Connecting-IP"));

/** What each limit counts by. */
const KEY_OF: Record<RateLimitScope, (c: Context<AppEnv>) => string> = {
  authIp: addressOf,
  password: (c) => currentUser(c).id,
  messages: (c) => currentUser(c).id,
  transfers: (c) => currentUser(c).id,
  replays: (c) => currentUser(c).id,
  groupAdds: (c) => currentUser(c).id,
};

/** Counts this request (`cost` units) against `scope` and puts the X-RateLimit-* headers on the response; 429 over the limit. */
export async function admitRequest(c: Context<AppEnv>, scope: RateLimitScope, cost = 1): Promise<void> {
  const headers = await enforceRateLimit(c.env, c.var.config, scope, KEY_OF[scope](c), cost);
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
}

/** The step `defineRoute` installs for `rateLimit: [scope]`: counts the request before its handler runs. */
export const rateLimitStep =
  (scope: RateLimitScope): RouteStep =>
  async (c, next) => {
    await admitRequest(c, scope);
    return next();
  };

/**
 * The step of `rateLimit: ["signIn"]` (after validation, so the email is a valid one): the attempt
 * counts as failed before the password is checked, and is forgiven unless the answer is 401
 * `invalid_credentials` (a right password, or a failure that was not a guess, is not counted).
 * A live device token of that email in the body takes the attempt out of the per-email ceiling
 * (services/rate-limit.ts `countSignInAttempt`).
 * The X-RateLimit-* headers are those of the tighter of the two counts, after any forgiving.
 */
export const signInStep: RouteStep = async (c, next) => {
  const body = c.req.valid("json" as never) as { email: string; deviceToken?: string };
  const email = body.email.toLowerCase();
  const deviceId = body.deviceToken ? await verifiedDeviceId(c.var.config, email, body.deviceToken) : null;
  const attempt = await countSignInAttempt(c.env, c.var.config, email, addressOf(c), deviceId);
  for (const [name, value] of Object.entries(rateLimitHeadersOf(attempt.decision))) c.header(name, value);
  let response: Response;
  try {
    response = await next();
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "invalid_credentials")) await attempt.forgive().catch(() => undefined);
    throw error;
  }
  await attempt.forgive();
  const { limit, remaining } = attempt.decision;
  response.headers.set("X-RateLimit-Remaining", String(Math.min(limit, remaining + 1)));
  return response;
};

/**
 * The address budget, first on every request the app serves (app.ts): before authentication, the
 * body guard, validation and any handler, so a stream of 401s, 403s or 400s from one address
 * meets 429 like any other stream, and a refused request costs nothing beyond the count.
 * `RATE_LIMIT_BUDGETS=off` (local only) skips it.
 */
export const addressBudget: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.var.config.rateLimits.budgets && !(await withinAddressBudget(c.env, addressOf(c)))) {
    throw budgetExhausted("address");
  }
  await next();
};

/**
 * The user budget, installed by `defineRoute` right after `requireAuth` verified the token: before
 * the admin check (a D1 read), validation and the handler, so refused requests count too.
 * On a keyed route (`replayable`), a request carrying an `Idempotency-Key` that finds the budget
 * used up draws on the user's replay allowance (`RATE_LIMIT_REPLAYS_PER_MINUTE`) instead: a client
 * retrying a lost answer still reaches the object that answers its stored outcome first
 * (API.md §1), with no key lookup here; past the allowance it is 429 as well, so a replay loop
 * is finite. (A new key inside the allowance runs: its own exact limits still apply.)
 */
export const userBudget =
  (options: { replayable: boolean }): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    if (c.var.config.rateLimits.budgets && !(await withinUserBudget(c.env, currentUser(c).id))) {
      if (!(options.replayable && c.req.header(IDEMPOTENCY_HEADER) !== undefined)) throw budgetExhausted("user");
      await admitRequest(c, "replays");
    }
    await next();
  };

/**
 * `rateLimit: ["groupAdds"]`: counts the people this request adds to a group against the caller's
 * per-minute allowance (`RATE_LIMIT_GROUP_ADDS_PER_MINUTE`): one for an add, one per `memberIds`
 * entry for a group's creation, none for a direct chat. After validation, before the handler.
 */
export const groupAddsStep: RouteStep = async (c, next) => {
  const body = c.req.valid("json" as never) as { type?: string; memberIds?: readonly string[]; userId?: string };
  const added = body.type === "group" ? new Set(body.memberIds ?? []).size : body.userId !== undefined ? 1 : 0;
  if (added > 0) await admitRequest(c, "groupAdds", added);
  return next();
};
