import type { Context } from "hono";
import type { AppEnv, RouteStep } from "../lib/types";
import { retriesClaimFirst } from "../services/idempotency";
import { clientIp, enforceRateLimit, RATE_LIMIT_HEADERS, type RateLimitScope, refundRateLimit } from "../services/rate-limit";
import { currentUser } from "./auth";

/** What each limit counts by. `login` runs after validation, so the email is a valid one. */
const KEY_OF: Record<RateLimitScope, (c: Context<AppEnv>) => string> = {
  authIp: (c) => clientIp(c.req.header("CF-Connecting-IP")),
  login: (c) => (c.req.valid("json" as never) as { email: string }).email.toLowerCase(),
  password: (c) => currentUser(c).id,
  messages: (c) => currentUser(c).id,
  transfers: (c) => currentUser(c).id,
};

/** Counts this request against `scope` and puts the X-RateLimit-* headers on the response; 429 over the limit. */
export async function admitRequest(c: Context<AppEnv>, scope: RateLimitScope): Promise<void> {
  const headers = await enforceRateLimit(c.env, c.var.config, scope, KEY_OF[scope](c));
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
}

/**
 * The step `defineRoute` installs for `rateLimit: [scope]`. After the key step (API.md §1: a
 * stored outcome answers first), but a keyed send's key is looked at by its own batch, after
 * this count: a request that then goes the claim-first way (its key was held, e.g. a replay; or
 * it was refused before its batch) gets its count back and its X-RateLimit-* headers removed, so
 * a replay is never counted, and a request that executes is counted once, by its second pass here.
 */
export const rateLimitStep =
  (scope: RateLimitScope): RouteStep =>
  async (c, next) => {
    const at = Date.now();
    await admitRequest(c, scope);
    try {
      return await next();
    } catch (error) {
      if (retriesClaimFirst(c.var.idempotencyClaim, error)) {
        await refundRateLimit(c.env, scope, KEY_OF[scope](c), at).catch(() => undefined);
        for (const name of RATE_LIMIT_HEADERS) c.header(name, undefined);
      }
      throw error;
    }
  };
