import { eq, isNotNull } from "drizzle-orm";
import { z } from "zod";
import { createDb } from "../db/client";
import { messages, users } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { StoredReply, WalletSummary } from "../durable-objects/wallet/wallet-types";
import { type Config, getConfig } from "../lib/config";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError, unwrap } from "../lib/errors";
import { requestFingerprint } from "../lib/idempotency";
import type { Discrepancy, LedgerEntry, Limits, Reconciliation, TransferWithStatus, Wallet } from "../schemas/wallet";
import { walletKeyRegistration } from "./idempotency";
import { publish, type WaitUntil } from "./realtime";
import { publishTransferEvent } from "./transfer-events";

/**
 * Wallet reads, admin grants and reconciliation (Worker side). The money itself lives in each
 * user's WalletDO; this module only addresses them. Wallets open on first use (with the welcome
 * grant), so every read on behalf of a user sees an opened wallet.
 */

export { walletStub };

/**
 * Opens the wallet of a new user and applies the `SIGNUP_CREDITS` welcome grant exactly once
 * (a `grant` ledger entry). Idempotent: calling it again, or concurrently, changes nothing.
 * Registration calls it; wallets are also opened on first use, so a failure here is repaired later.
 */
export async function openWallet(env: Env, userId: string): Promise<Wallet> {
  return unwrap(await walletStub(env, userId).open(userId, getConfig(env).signupCredits));
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
  return transfer;
}

/**
 * Admin grant; 404 `user_not_found` for an unknown user. Idempotent per (admin, key): the granted
 * user's wallet keeps the outcome, D1 makes the key the admin's across endpoints and users. The
 * owner is told (`wallet.updated`) when this call applied it.
 */
export async function grantCredits(
  env: Env,
  config: Config,
  adminId: string,
  userId: string,
  body: { amount: number; reason: string },
  idempotencyKey: string | null,
  waitUntil: WaitUntil,
): Promise<StoredReply> {
  const db = createDb(env.DB);
  const registration =
    idempotencyKey === null
      ? null
      : walletKeyRegistration(
          db,
          adminId,
          idempotencyKey,
          await requestFingerprint("POST", `/api/v1/admin/wallets/${userId}/grants`, body),
          `grant:${userId}`,
        );
  const userQuery = db.select({ id: users.id }).from(users).where(eq(users.id, userId));
  const [found] = registration
    ? await db.batch([userQuery, ...registration.statements]).then(([u, , keyRows]) => {
        if (u.length > 0) registration.assertOurs(keyRows);
        return [u] as const;
      })
    : await db.batch([userQuery]);
  if (found.length === 0) {
    await registration?.release();
    throw new ApiError("user_not_found", [`No user with id ${userId}`]);
  }
  const granted = await walletStub(env, userId).grant({
    userId,
    amount: body.amount,
    reason: body.reason,
    grantedBy: adminId,
    idempotencyKey,
    fingerprint: registration?.fingerprint ?? null,
    signupCredits: config.signupCredits,
  });
  if (!granted.ok) await registration?.release();
  const { reply, wallet } = unwrap(granted);
  if (wallet) publish(env, waitUntil, [userId], { type: "wallet.updated", data: wallet });
  return reply;
}

/** Wallet summaries fetched at once: enough to overlap round trips, few enough not to flood one isolate. */
const RECONCILE_CONCURRENCY = 16;

/**
 * Walks every user's wallet and checks the books end to end (ARCHITECTURE.md §4 invariants):
 * each wallet's balanceAfter chain and its entries vs its transfers; every transfer_out paired
 * with exactly one transfer_in of the same amount (a pending one may lack it: in flight); every
 * posted transfer has exactly one credit_transfer message in D1 that matches it, and no such
 * message lacks its transfer; and total balance + in-flight = total granted.
 *
 * It is not a snapshot: run under live traffic it can see a transfer between its steps (reported
 * as pending/in flight, not as a discrepancy) but a transfer that starts mid-walk can make the
 * totals differ by its amount; run it again before acting on a totals-only discrepancy.
 */
export async function reconcile(env: Env): Promise<Reconciliation> {
  const db = createDb(env.DB);
  const userIds = (await db.select({ id: users.id }).from(users).all()).map((row) => row.id);
  const summaries: WalletSummary[] = [];
  for (let i = 0; i < userIds.length; i += RECONCILE_CONCURRENCY) {
    const batch = userIds.slice(i, i + RECONCILE_CONCURRENCY);
    summaries.push(...(await Promise.all(batch.map((id) => walletStub(env, id).summary(id)))));
  }
  // The message table is read here only to check the books; the message service owns writes.
  const transferMessages = await db
    .select({
      id: messages.id,
      transferId: messages.transferId,
      senderId: messages.senderId,
      recipientId: messages.transferRecipientId,
      amount: messages.transferAmount,
    })
    .from(messages)
    .where(isNotNull(messages.transferId))
    .all();
  return reconcileSummaries(summaries, transferMessages);
}

type TransferMessage = {
  id: string;
  transferId: string | null;
  senderId: string;
  recipientId: string | null;
  amount: number | null;
};

/** The pure half of `reconcile`, so the checks themselves are testable on crafted books. */
export function reconcileSummaries(summaries: WalletSummary[], transferMessages: TransferMessage[]): Reconciliation {
  const discrepancies: Discrepancy[] = [];
  let totalBalance = 0;
  let totalGranted = 0;
  let pendingTransfers = 0;
  let inFlightAmount = 0;
  const incoming = new Map<string, { recipientId: string; senderId: string; amount: number }[]>();
  for (const wallet of summaries) {
    totalBalance += wallet.balance;
    totalGranted += wallet.granted;
    for (const problem of wallet.problems) {
      discrepancies.push({ kind: "wallet_ledger", userId: wallet.userId, transferId: null, detail: problem });
    }
    for (const entry of wallet.incoming) {
      const list = incoming.get(entry.transferId) ?? [];
      list.push({ recipientId: wallet.userId, senderId: entry.senderId, amount: entry.amount });
      incoming.set(entry.transferId, list);
    }
  }
  const messagesByTransfer = new Map<string, TransferMessage[]>();
  for (const message of transferMessages) {
    if (message.transferId === null) continue;
    const list = messagesByTransfer.get(message.transferId) ?? [];
    list.push(message);
    messagesByTransfer.set(message.transferId, list);
  }
  const outgoingIds = new Set<string>();
  for (const wallet of summaries) {
    for (const out of wallet.outgoing) {
      outgoingIds.add(out.transferId);
      const ins = incoming.get(out.transferId) ?? [];
      const note = (kind: string, detail: string) =>
        discrepancies.push({ kind, userId: wallet.userId, transferId: out.transferId, detail });
      if (out.state === "pending") {
        pendingTransfers += 1;
        if (ins.length === 0) inFlightAmount += out.amount;
      } else if (out.state === "voided") {
        if (ins.length > 0)
          note("voided_transfer_credited", `voided transfer of ${out.amount} was credited to ${out.recipientId}`);
      } else if (ins.length === 0) {
        note("unpaired_transfer_out", `posted transfer of ${out.amount} to ${out.recipientId} has no transfer_in`);
      }
      if (ins.length > 1) note("duplicate_transfer_in", `${ins.length} transfer_in entries`);
      for (const credit of ins) {
        if (credit.recipientId !== out.recipientId || credit.senderId !== wallet.userId || credit.amount !== out.amount) {
          note(
            "mismatched_transfer_in",
            `transfer_out ${out.amount} to ${out.recipientId} but transfer_in ${credit.amount} from ${credit.senderId} to ${credit.recipientId}`,
          );
        }
      }
      if (out.state === "voided" && (messagesByTransfer.get(out.transferId)?.length ?? 0) > 0) {
        note("voided_transfer_message", "a voided transfer has a credit_transfer message");
      }
      if (out.state === "posted") {
        const posted = messagesByTransfer.get(out.transferId) ?? [];
        if (posted.length !== 1) note("transfer_message_count", `${posted.length} credit_transfer messages, expected 1`);
        for (const message of posted) {
          if (
            message.id !== out.messageId ||
            message.senderId !== wallet.userId ||
            message.recipientId !== out.recipientId ||
            message.amount !== out.amount
          ) {
            note("mismatched_transfer_message", `message ${message.id} does not match the transfer`);
          }
        }
      }
    }
  }
  for (const [transferId, ins] of incoming) {
    if (!outgoingIds.has(transferId)) {
      for (const credit of ins) {
        discrepancies.push({
          kind: "orphan_transfer_in",
          userId: credit.recipientId,
          transferId,
          detail: `transfer_in of ${credit.amount} from ${credit.senderId} without a transfer_out`,
        });
      }
    }
  }
  for (const transferId of messagesByTransfer.keys()) {
    if (!outgoingIds.has(transferId)) {
      discrepancies.push({
        kind: "orphan_transfer_message",
        userId: null,
        transferId,
        detail: "credit_transfer message without a transfer",
      });
    }
  }
  if (totalBalance + inFlightAmount !== totalGranted) {
    discrepancies.push({
      kind: "totals",
      userId: null,
      transferId: null,
      detail: `total balance ${totalBalance} + in flight ${inFlightAmount} != total granted ${totalGranted}`,
    });
  }
  return { wallets: summaries.length, totalBalance, totalGranted, pendingTransfers, inFlightAmount, discrepancies };
}
