import { sessionEndedRefusal } from "../durable-objects/wallet/sessions";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { ApiError } from "../lib/errors";
import type { AuthUser } from "../lib/types";

/**
 * The session check of money and account routes (API.md "Ended sessions"), asked of the caller's
 * own object, the sessions' owner (admin routes ask it in the same call as the role and status:
 * admin-access.ts). A module of its own, below auth, realtime and admin-access, so that services
 * call down to it and none calls back up.
 */

/** 401 `session_ended`: the session (refresh-token family) of this access token was revoked. */
export const sessionEnded = () => {
  const refusal = sessionEndedRefusal();
  return new ApiError(refusal.code, refusal.details);
};

/** Whether the caller's session (refresh-token family) has not ended: asks the caller's object, not D1. */
export const sessionIsLive = (env: Env, caller: AuthUser): Promise<boolean> =>
  walletStub(env, caller.id).sessionLive(caller.sessionId);

/** 401 `session_ended` when the caller's session has been revoked. */
export async function assertSessionLive(env: Env, caller: AuthUser): Promise<void> {
  if (!(await sessionIsLive(env, caller))) throw sessionEnded();
}
