import { createDb } from "../db/client";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { StoredReply } from "../durable-objects/wallet/wallet-types";
import type { Config } from "../lib/config";
import { ApiError, unwrap } from "../lib/errors";
import { requestFingerprint } from "../lib/idempotency";
import type { TransferRequest } from "../schemas/wallet";
import { registerIdempotencyKey } from "./idempotency";
import { assertCanSendTo } from "./users";

/**
 * Credit transfers, Worker side (ARCHITECTURE.md §4 step 1–2): the checks that need no money
 * (validation, D1: suspension, recipient, block), then one RPC to the sender's WalletDO, which
 * runs the rest of the protocol and answers the exact response to send (fresh or replayed).
 */

export const TRANSFER_PATH = "/api/v1/messages/credit-transfer";

export type TransferInput = { senderId: string; recipientId: string; amount: number; note: string | null };

/** The checks zod cannot make alone (they depend on vars or on the caller): 400 `validation_failed`. */
export function validateTransfer(config: Config, senderId: string, body: TransferRequest): TransferInput {
  const problems: string[] = [];
  if (body.amount > config.maxTransferAmount) problems.push(`amount: must be at most ${config.maxTransferAmount}`);
  if (body.recipientId === senderId) problems.push("recipientId: cannot be yourself");
  if (problems.length > 0) throw new ApiError("validation_failed", problems);
  return { senderId, recipientId: body.recipientId, amount: body.amount, note: body.note ?? null };
}

/**
 * Runs one transfer request. `reply.body` is the complete response envelope (201 Transfer, or a
 * stored 409 business refusal); `reply.replayed` says it was answered from the idempotency record.
 * Refusals before execution (400/403/404, 409 idempotency_key_reused) are thrown as ApiError.
 * `admit` (the route's rate limit) runs at the same time as the D1 checks: both only read or count
 * before any money moves, so neither needs to wait for the other; its refusal (429) still wins
 * over theirs, as when they ran one after the other.
 */
export async function executeTransfer(
  env: Env,
  config: Config,
  input: TransferInput,
  idempotencyKey: string | null,
  admit: () => Promise<void> = async () => {},
): Promise<StoredReply> {
  validateTransfer(config, input.senderId, { recipientId: input.recipientId, amount: input.amount, note: input.note });
  const [admitted, checked] = await Promise.allSettled([
    admit(),
    assertCanSendTo(createDb(env.DB), input.senderId, input.recipientId),
  ]);
  if (admitted.status === "rejected") throw admitted.reason;
  if (checked.status === "rejected") throw checked.reason;
  // The fingerprint covers the normalized body, so `note` omitted and `note: null` are the same request.
  const fingerprint =
    idempotencyKey === null
      ? null
      : await requestFingerprint("POST", TRANSFER_PATH, {
          recipientId: input.recipientId,
          amount: input.amount,
          note: input.note,
        });
  if (idempotencyKey !== null && fingerprint !== null) {
    await registerIdempotencyKey(createDb(env.DB), input.senderId, idempotencyKey, fingerprint);
  }
  return unwrap(
    await walletStub(env, input.senderId).transfer({
      ...input,
      idempotencyKey,
      fingerprint,
      signupCredits: config.signupCredits,
      dailyLimit: config.dailyTransferLimit,
    }),
  );
}
