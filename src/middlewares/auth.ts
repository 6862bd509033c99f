import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../lib/errors";
import { IDEMPOTENCY_HEADER } from "../lib/idempotency";
import { verifyAccessToken } from "../lib/jwt";
import type { AppEnv, AuthUser } from "../lib/types";
import { type AdminRefusal, adminRefusal } from "../services/admin-access";
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
 * After `requireAuth` on routes declared `auth: "admin"`: the one admin check
 * (services/admin-access.ts), asked on every request of the caller's object (role, status and
 * session in one call; no D1 query). With `liftsSuspension`, the route lifts the suspension of the
 * path's `userId`, and the caller's own is refused.
 */
export const requireAdmin =
  (options: { liftsSuspension?: boolean; keptByWallet?: boolean } = {}): MiddlewareHandler<AppEnv> =>
  async (c, next) => {
    const caller = currentUser(c);
    const refusal = await adminRefusal(c.env, caller, {
      liftsOwnSuspension: options.liftsSuspension && c.req.param("userId") === caller.id,
    });
    // A route whose outcome the wallet keeps (grants) answers a stored outcome before this check
    // (API.md §1): with an Idempotency-Key the refusal goes to the handler, which hands it to the
    // wallet. Without a key no outcome can be stored, so it is answered here, before validation.
    if (refusal && !(options.keptByWallet && c.req.header(IDEMPOTENCY_HEADER) !== undefined)) {
      throw new ApiError(refusal.code, refusal.details);
    }
    c.set("adminRefusal", refusal);
    await next();
  };

/** The admin check's refusal on a route whose handler answers it (see `requireAdmin`); null: an admin. */
export function deferredAdminRefusal(c: Context<AppEnv>): AdminRefusal | null {
  return c.var.adminRefusal ?? null;
}

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
