import { eq } from "drizzle-orm";
import { z } from "zod";
import { createDb } from "../db/client";
import { chats, users } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { PreCheckRefusal, StoredReply } from "../durable-objects/wallet/wallet-types";
import { type Config, getConfig } from "../lib/config";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError, unwrap } from "../lib/errors";
import { requestFingerprint } from "../lib/idempotency";
import type { LedgerEntry, Limits, TransferWithStatus, Wallet } from "../schemas/wallet";
import { directKeyOf } from "./membership";
import { publish, type WaitUntil } from "./realtime";
import { publishTransferEvent } from "./transfer-events";

/**
 * Wallet reads and admin grants (Worker side; reconciliation: services/reconciliation/). The money itself lives in each
 * user's WalletDO; this module only addresses them. Wallets open on first use (with the welcome
 * grant), so every read on behalf of a user sees an opened wallet.
 */

export { walletStub };

/**
 * Opens the wallet of a new user and applies the `SIGNUP_CREDITS` welcome grant exactly once
 * (a `grant` ledger entry), and its account (the owner of its status, role and blocks) with the
 * role registration gave it; from then on the user exists for a transfer's recipient check. Idempotent: calling it again, or concurrently, changes nothing.
 * Registration calls it; wallets are also opened on first use, so a failure here is repaired later.
 */
export async function openWallet(env: Env, userId: string, role: "user" | "admin" = "user"): Promise<Wallet> {
  return unwrap(await walletStub(env, userId).open(userId, getConfig(env).signupCredits, role));
}

export async function getWallet(env: Env, config: Config, userId: string): Promise<Wallet> {
  return unwrap(await walletStub(env, userId).open(userId, config.signupCredits));
}

const ledgerCursorShape = z.object({ seq: z.number().int().min(1) });

/** Newest first, `limit` per page; the cursor is the ledger position of the last entry shown. */
export async function listTransactions(
  env: Env,
  config: Config,
  userId: string,
  limit: number,
  cursor: string | undefined,
): Promise<{ items: LedgerEntry[]; nextCursor: string | null }> {
  const beforeSeq = cursor === undefined ? null : decodeCursor(cursor, ledgerCursorShape).seq;
  const rows = unwrap(await walletStub(env, userId).transactions(userId, config.signupCredits, limit, beforeSeq));
  return toPage(
    rows,
    limit,
    ({ seq: _seq, createdAt, ...entry }) => ({ ...entry, createdAt: new Date(createdAt).toISOString() }),
    (row) => ({ seq: row.seq }),
  );
}

export async function getLimits(env: Env, config: Config, userId: string): Promise<Limits> {
  return unwrap(
    await walletStub(env, userId).limits(userId, config.signupCredits, config.maxTransferAmount, config.dailyTransferLimit),
  );
}

/**
 * A transfer the caller sent or received, with its status; 404 `transfer_not_found` for anyone
 * else. Reading a pending transfer pushes it forward; if that ended it, its frames go out here.
 */
export async function getTransfer(
  env: Env,
  config: Config,
  userId: string,
  transferId: string,
  waitUntil: WaitUntil,
): Promise<TransferWithStatus> {
  const { transfer, event } = unwrap(await walletStub(env, userId).getTransfer(userId, config.signupCredits, transferId));
  if (event) publishTransferEvent(env, waitUntil, event);
  if (transfer.status === "posted" && transfer.chatId === null) {
    // A first transfer's credit lands before its chat exists (a void must create none): its recipient learns the chat here.
    const chat = await createDb(env.DB)
      .select({ id: chats.id })
      .from(chats)
      .where(eq(chats.directKey, directKeyOf(transfer.senderId, transfer.recipientId)))
      .get();
    return { ...transfer, chatId: chat?.id ?? null };
  }
  return transfer;
}

/**
 * Admin grant; 404 `user_not_found` for an unknown user. Idempotent per (admin, key): the granted
 * user's object is the only registry of grant keys (API.md §1: one scope per admin for grants)
 * and keeps the outcome, and the grant's audit row is written in the grant's own transaction
 * there (its outbox delivers it to D1). A key with a stored outcome answers it before the admin
 * check (`caller.refusal`, handed to the wallet like a transfer's pre-check); a grant refused
 * before it executed, or failing (5xx), keeps no key. The owner is told (`wallet.updated`) when
 * this call applied it.
 */
export async function grantCredits(
  env: Env,
  config: Config,
  caller: { adminId: string; requestId: string; refusal: PreCheckRefusal | null },
  userId: string,
  body: { amount: number; reason: string },
  idempotencyKey: string | null,
  waitUntil: WaitUntil,
): Promise<StoredReply> {
  const { adminId, requestId, refusal } = caller;
  const wallet = walletStub(env, userId);
  const fingerprint =
    idempotencyKey === null ? null : await requestFingerprint("POST", `/api/v1/admin/wallets/${userId}/grants`, body);
  // A stored outcome answers first, from the key's owner alone (no D1 read for a replay).
  const stored = idempotencyKey === null ? null : await wallet.storedGrant({ grantedBy: adminId, idempotencyKey, fingerprint });
  if (stored) return unwrap(stored).reply;
  const found = await createDb(env.DB).select({ id: users.id }).from(users).where(eq(users.id, userId)).get();
  if (!found) throw new ApiError(refusal?.code ?? "user_not_found", refusal?.details ?? [`No user with id ${userId}`]);
  const granted = await wallet.grant({
    userId,
    amount: body.amount,
    reason: body.reason,
    grantedBy: adminId,
    requestId,
    idempotencyKey,
    fingerprint,
    refusal,
    signupCredits: config.signupCredits,
  });
  const { reply, wallet: after } = unwrap(granted);
  if (after) publish(env, waitUntil, [userId], { type: "wallet.updated", data: after });
  return reply;
}
