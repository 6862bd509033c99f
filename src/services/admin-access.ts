import type { AdminFacts } from "../durable-objects/wallet/wallet-do";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { ApiError, type ErrorCode } from "../lib/errors";
import type { AuthUser } from "../lib/types";
import { sessionEnded } from "./session-check";

/**
 * Who may act as an admin, decided on every admin request by the caller's own object, the owner of
 * the account's role and status and of its sessions (ARCHITECTURE.md §11), never from the token
 * alone (the `role` claim is only what was true at sign-in) and never from D1's `users` row (an
 * index the owner writes behind itself): an operator's `npm run admin -- revoke`, a suspension or
 * a logout takes effect on the next request. One RPC answers all three facts; no D1 query.
 */

/** Why an admin request is refused; a value, so a caller can answer a stored outcome first (grants). */
export type AdminRefusal = { code: ErrorCode; details: string[] };

export type AdminCheckOptions = {
  /** The request would lift the caller's own suspension: nobody may (API.md "Admins"). */
  liftsOwnSuspension?: boolean;
};

const refusal = (error: ApiError): AdminRefusal => ({ code: error.code, details: error.details });

/**
 * The refusal, in this order: the account is gone → 401 `invalid_token`; the session ended → 401
 * `session_ended`; not an admin (now) → 403 `insufficient_permissions`; lifting one's own
 * suspension → 403 `insufficient_permissions` (before the suspension's own refusal, so a
 * suspended admin is told exactly that); suspended → 403 `account_suspended`. Null: go on.
 */
export function adminRefusalOf(facts: AdminFacts | null | undefined, options: AdminCheckOptions = {}): AdminRefusal | null {
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

/** The admin check as a value: the caller's object answers role, status and session in one call, then `adminRefusalOf`. */
export async function adminRefusal(env: Env, caller: AuthUser, options: AdminCheckOptions = {}): Promise<AdminRefusal | null> {
  return adminRefusalOf(await walletStub(env, caller.id).adminFacts(caller.sessionId), options);
}
