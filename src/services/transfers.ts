import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { PreCheckRefusal, StoredReply } from "../durable-objects/wallet/wallet-types";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import { requestFingerprint } from "../lib/idempotency";
import type { RateLimitDecision } from "../lib/sliding-window";
import type { TransferRequest } from "../schemas/wallet";
import type { WaitUntil } from "./realtime";
import { publishTransferEvent } from "./transfer-events";

/**
 * Credit transfers, Worker side (ARCHITECTURE.md §4 and §11 "Transfer"): ONE call to the sender's
 * object and no D1 query. The sender's object is the registry of the caller's keys (a key with a
 * stored outcome answers first), holds the sender's status, and asks the recipient's object
 * whether it exists and has not blocked the sender before any money moves (wallet-do.ts
 * `transfer`). The Worker only decides what needs nothing but the request: the 400s, handed to
 * the wallet so that a stored outcome still answers first. The frames go to both parties'
 * realtime objects, which know whether they have sockets (no presence read).
 * The session check (an ended session's token refused with 401 `session_ended`) is the sender's
 * object's too (sessions.ts), first after a stored outcome.
 */

export const TRANSFER_PATH = "/api/v1/messages/credit-transfer";

export type TransferAnswer = { reply: StoredReply; rateLimit: RateLimitDecision | null };

/**
 * Runs one transfer request. `reply.body` is the complete response envelope (201 Transfer, or a
 * stored 409 business refusal or `transfer_voided`); `reply.replayed` says it was answered from
 * the key's stored outcome. Refusals of a new request (400, 403, 404, 429, 409
 * `idempotency_key_reused`) are thrown as ApiError and store nothing.
 */
export async function executeTransfer(
  env: Env,
  config: Config,
  senderId: string,
  // The sender's object refuses an ended session itself (sessions.ts), after a stored key outcome.
  sessionId: string,
  body: TransferRequest,
  idempotencyKey: string | null,
  waitUntil: WaitUntil,
): Promise<TransferAnswer> {
  const input = { recipientId: body.recipientId, amount: body.amount, note: body.note ?? null };
  // The fingerprint covers the normalized body, so `note` omitted and `note: null` are the same request.
  const fingerprint = idempotencyKey === null ? null : await requestFingerprint("POST", TRANSFER_PATH, input);
  const result = await walletStub(env, senderId).transfer({
    senderId,
    sessionId,
    ...input,
    idempotencyKey,
    fingerprint,
    refusal: requestRefusal(config, senderId, input),
    chatId: null,
    signupCredits: config.signupCredits,
    dailyLimit: config.dailyTransferLimit,
    ratePerMinute: config.rateLimits.transfersPerMinute,
    voidAfterMs: config.transferVoidAfterMs,
  });
  if (!result.ok) throw new ApiError(result.code, result.details, result.headers);
  if (result.event) publishTransferEvent(env, waitUntil, result.event);
  return { reply: result.reply, rateLimit: result.rateLimit };
}

/**
 * The 400 a new request gets before any money moves: amount over MAX_TRANSFER_AMOUNT, paying
 * yourself. The sender's status (403 `account_suspended`), the recipient's existence (404
 * `user_not_found`) and their block (403 `recipient_blocked`) are the owners' (wallet-do.ts).
 */
function requestRefusal(
  config: Config,
  senderId: string,
  input: { recipientId: string; amount: number },
): PreCheckRefusal | null {
  const problems: string[] = [];
  if (input.amount > config.maxTransferAmount) problems.push(`amount: must be at most ${config.maxTransferAmount}`);
  if (input.recipientId === senderId) problems.push("recipientId: cannot be yourself");
  return problems.length > 0 ? { code: "validation_failed", details: problems } : null;
}
