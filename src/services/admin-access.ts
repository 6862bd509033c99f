import { eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { users } from "../db/schema";
import { ApiError, type ErrorCode } from "../lib/errors";
import type { AuthUser } from "../lib/types";
import { sessionEnded, sessionIsLive } from "./session-check";

/**
 * Who may act as an admin, decided from D1 on every admin request, never from the token alone:
 * the `role` claim is only what was true at sign-in, and an operator's `npm run admin -- revoke`,
 * a suspension or a logout must take effect on the next request. One query reads the caller's
 * current role and status; whether the token's session is still live is asked of the caller's
 * object (the sessions' owner), at the same time.
 */

/** Why an admin request is refused; a value, so a caller can answer a stored outcome first (grants). */
export type AdminRefusal = { code: ErrorCode; details: string[] };

export type AdminCheckOptions = {
  /** The request would lift the caller's own suspension: nobody may (API.md "Admins"). */
  liftsOwnSuspension?: boolean;
};

/** The caller's role and status, in one row (none: the account is gone). */
export const adminFactsQuery = (db: Database, caller: AuthUser) =>
  db.select({ role: users.role, status: users.status }).from(users).where(eq(users.id, caller.id));

type AdminFacts = { role: "user" | "admin"; status: "active" | "suspended"; sessionLive: boolean };

const refusal = (error: ApiError): AdminRefusal => ({ code: error.code, details: error.details });

/**
 * The refusal, in this order: the account is gone → 401 `invalid_token`; the session ended → 401
 * `session_ended`; not an admin (now) → 403 `insufficient_permissions`; lifting one's own
 * suspension → 403 `insufficient_permissions` (before the suspension's own refusal, so a
 * suspended admin is told exactly that); suspended → 403 `account_suspended`. Null: go on.
 */
export function adminRefusalOf(facts: AdminFacts | undefined, options: AdminCheckOptions = {}): AdminRefusal | null {
  if (!facts) return refusal(new ApiError("invalid_token", ["The account of this access token no longer exists"]));
  if (!facts.sessionLive) return refusal(sessionEnded());
  if (facts.role !== "admin") return refusal(new ApiError("insufficient_permissions", ["This operation is for admins only"]));
  if (options.liftsOwnSuspension) {
    return refusal(new ApiError("insufficient_permissions", ["Nobody lifts their own suspension; ask another admin"]));
  }
  if (facts.status === "suspended") {
    return refusal(new ApiError("account_suspended", ["This admin account is suspended: it cannot act as an admin"]));
  }
  return null;
}

/** The admin check as a value: one D1 query and the caller's object's session check at once, then `adminRefusalOf`. */
export async function adminRefusal(
  env: Env,
  db: Database,
  caller: AuthUser,
  options: AdminCheckOptions = {},
): Promise<AdminRefusal | null> {
  const [facts, sessionLive] = await Promise.all([adminFactsQuery(db, caller).get(), sessionIsLive(env, caller)]);
  return adminRefusalOf(facts && { ...facts, sessionLive }, options);
}
