import type { Context } from "hono";
import type { AppEnv, RouteStep } from "../lib/types";
import { clientIp, enforceRateLimit, type RateLimitScope } from "../services/rate-limit";
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

/** The step `defineRoute` installs for `rateLimit: [scope]`. */
export const rateLimitStep =
  (scope: RateLimitScope): RouteStep =>
  async (c, next) => {
    await admitRequest(c, scope);
    return next();
  };
