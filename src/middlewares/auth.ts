import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../lib/errors";
import { verifyAccessToken } from "../lib/jwt";
import type { AppEnv, AuthUser } from "../lib/types";
import { assertAdmin } from "../services/admin-access";
import type { AuditActor } from "../services/audit";

/** Puts the caller of a bearer-token request on the context, or answers 401. */
export const requireAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("Authorization");
  if (!header) throw new ApiError("authentication_required", ["Send Authorization: Bearer <access token>"]);
  const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(header.trim());
  if (!match?.[1]) throw new ApiError("invalid_token", ["The Authorization header must be Bearer <access token>"]);
  c.set("user", await verifyAccessToken(c.var.config, match[1]));
  await next();
};

/**
 * After `requireAuth` on routes declared `auth: "admin"`: the one admin check (services/admin-access.ts),
 * read from D1 on every request. With `liftsSuspension`, the route lifts the suspension of the
 * path's `userId`, and the caller's own is refused.
 */
export const requireAdmin =
  (options: { liftsSuspension?: boolean } = {}): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    const caller = currentUser(c);
    await assertAdmin(c.var.db, caller, { liftsOwnSuspension: options.liftsSuspension && c.req.param("userId") === caller.id });
    await next();
  };

/** The caller of a route declared with `auth: "user"` or `"admin"`. */
export function currentUser(c: Context<AppEnv>): AuthUser {
  const user = c.var.user;
  if (!user) throw new ApiError("authentication_required");
  return user;
}

/** The caller of an admin route as the audit log records them: who, and through which request. */
export function currentActor(c: Context<AppEnv>): AuditActor {
  return { actorId: currentUser(c).id, requestId: c.var.requestId };
}
