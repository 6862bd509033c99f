import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../lib/errors";
import { verifyAccessToken } from "../lib/jwt";
import type { AppEnv, AuthUser } from "../lib/types";

/** Puts the caller of a bearer-token request on the context, or answers 401. */
export const requireAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("Authorization");
  if (!header) throw new ApiError("authentication_required", ["Send Authorization: Bearer <access token>"]);
  const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(header.trim());
  if (!match?.[1]) throw new ApiError("invalid_token", ["The Authorization header must be Bearer <access token>"]);
  c.set("user", await verifyAccessToken(c.var.config, match[1]));
  await next();
};

/** Why the caller may not use an admin route, or null when they may. */
export function adminRefusal(user: AuthUser): { code: "insufficient_permissions"; details: string[] } | null {
  return user.role === "admin" ? null : { code: "insufficient_permissions", details: ["This operation is for admins only"] };
}

/** After `requireAuth` on routes declared `auth: "admin"`: 403 unless the caller is an admin. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const refusal = adminRefusal(currentUser(c));
  if (refusal) throw new ApiError(refusal.code, refusal.details);
  await next();
};

/** The caller of a route declared with `auth: "user"` or `"admin"`. */
export function currentUser(c: Context<AppEnv>): AuthUser {
  const user = c.var.user;
  if (!user) throw new ApiError("authentication_required");
  return user;
}
