import type { Context, MiddlewareHandler } from "hono";
import { clientAddress } from "../lib/client-address";
import { ApiError } from "../lib/errors";
import type { AppEnv, RouteStep } from "../lib/types";
import { holdsKey } from "../services/idempotency";
import {
  budgetExhausted,
  countSignInAttempt,
  enforceRateLimit,
  exhaustedBudget,
  RATE_LIMIT_HEADERS,
  type RateLimitScope,
  rateLimitHeadersOf,
} from "../services/rate-limit";
import { currentUser } from "./auth";

const addressOf = (c: Context<AppEnv>) => clientAddress(c.req.header("CF-Connecting-IP"));

/** What each limit counts by. */
const KEY_OF: Record<RateLimitScope, (c: Context<AppEnv>) => string> = {
  authIp: addressOf,
  password: (c) => currentUser(c).id,
  messages: (c) => currentUser(c).id,
  transfers: (c) => currentUser(c).id,
};

/** Counts this request against `scope` and puts the X-RateLimit-* headers on the response; 429 over the limit. */
export async function admitRequest(c: Context<AppEnv>, scope: RateLimitScope): Promise<void> {
  const headers = await enforceRateLimit(c.env, c.var.config, scope, KEY_OF[scope](c));
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
 * The X-RateLimit-* headers are those of the tighter of the two counts, after any forgiving.
 */
export const signInStep: RouteStep = async (c, next) => {
  const { email } = c.req.valid("json" as never) as { email: string };
  const attempt = await countSignInAttempt(c.env, c.var.config, email.toLowerCase(), addressOf(c));
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
 * The coarse budgets on every route (the step `defineRoute` installs first, after validation and
 * the key's parsing): per client address always, per user on authenticated routes. A request over
 * a budget that carries an Idempotency-Key its caller holds goes on, so its stored outcome answers
 * (API.md §1); the key is looked up only then, so budgets cost no D1 read. `RATE_LIMIT_BUDGETS=off`
 * (local only) skips them.
 */
export const budgetStep: RouteStep = async (c, next) => {
  if (!c.var.config.rateLimits.budgets) return next();
  const user = c.var.user ?? null;
  const exhausted = await exhaustedBudget(c.env, addressOf(c), user?.id ?? null);
  if (exhausted === null) return next();
  const key = c.var.idempotencyKey;
  if (user !== null && key !== null && (await holdsKey(c.env, c.var.db, user.id, key))) return next();
  throw budgetExhausted(exhausted);
};

/**
 * `budgetStep` for routes whose outcome a chat keeps (message sends: the key's scope is the chat,
 * so only the chat can tell whether it holds an outcome): a keyed request over a budget goes on
 * with the budget's refusal, which the chat answers unless the key has a stored outcome.
 */
export const chatKeptBudgetStep: RouteStep = async (c, next) => {
  if (!c.var.config.rateLimits.budgets) return next();
  const user = c.var.user ?? null;
  const exhausted = await exhaustedBudget(c.env, addressOf(c), user?.id ?? null);
  if (exhausted === null) return next();
  const refusal = budgetExhausted(exhausted);
  if (user === null || c.var.idempotencyKey === null) throw refusal;
  c.set("budgetRefusal", { code: refusal.code, details: refusal.details, headers: refusal.headers });
  return next();
};

/** The address budget for what is served outside the routers (/openapi.json, /docs and its assets). */
export const addressBudget: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.var.config.rateLimits.budgets) {
    const exhausted = await exhaustedBudget(c.env, addressOf(c), null);
    if (exhausted !== null) throw budgetExhausted(exhausted);
  }
  await next();
};
