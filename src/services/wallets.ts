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
import { log } from "../lib/log";
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
 * Admin grant; 404 `user_not_found` for an unknown user. An Idempotency-Key has one scope per
 * admin (API.md §1): the admin's own object claims it for one user and request (grant-claims.ts)
 * before the grant runs, so the same key for another user or body is 409 `idempotency_key_reused`.
 * The granted user's object keeps the grant, its stored 201 and its audit row in one transaction
 * (its outbox delivers the row to D1). A key whose request was seen answers before the admin
 * check: the claim is read (not taken) for a refused caller and the user's object replays a
 * stored 201, else returns `caller.refusal` (handed over like a transfer's pre-check). A grant
 * refused before it executed, or failing (5xx), releases its claim: nothing is stored. The owner
 * is told (`wallet.updated`) when this call applied the grant.
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
  if (idempotencyKey === null) return grantInTarget(env, config, caller, userId, body, null, waitUntil);
  const fingerprint = await requestFingerprint("POST", `/api/v1/admin/wallets/${userId}/grants`, body);
  const keyed: KeyedGrant = { key: idempotencyKey, targetId: userId, fingerprint };
  const token = await claimGrantKey(env, caller.adminId, keyed, caller.refusal === null);
  let reply: StoredReply | null = null;
  try {
    reply = await grantInTarget(env, config, caller, userId, body, keyed, waitUntil);
    return reply;
  } finally {
    await endGrantClaim(env, caller.adminId, keyed, token, reply);
  }
}

type KeyedGrant = { key: string; targetId: string; fingerprint: string };

const keyReused = () =>
  new ApiError("idempotency_key_reused", ["This Idempotency-Key was already used with a different request body"]);

/**
 * Claims the admin's key (`hold`: an admin's request that may execute; else only read). Throws 409
 * when the key names another user or body. A claim left pending by a request that died is
 * replaced only once its target shows it stored nothing: had it granted, the key is that grant's.
 * Returns the token of the claim this request holds (null: none).
 */
async function claimGrantKey(env: Env, adminId: string, keyed: KeyedGrant, hold: boolean): Promise<string | null> {
  const admin = walletStub(env, adminId);
  let answer = await admin.claimGrantKey({ ...keyed, hold, replacing: null });
  if (answer.kind === "stale") {
    const { targetId, fingerprint } = answer;
    const granted = await walletStub(env, targetId).storedGrant({ grantedBy: adminId, idempotencyKey: keyed.key, fingerprint });
    if (granted) {
      if (granted.ok) await admin.settleGrantKey(keyed.key, targetId, fingerprint);
      throw keyReused();
    }
    answer = await admin.claimGrantKey({ ...keyed, hold, replacing: answer.token });
  }
  // A second `stale`: another request took the claim over meanwhile and died too; refusing is safe.
  if (answer.kind !== "go") throw keyReused();
  return answer.token;
}

/**
 * After the target answered: a 201 (fresh or replayed) settles the key, anything else (a refusal
 * before execution, a 5xx) releases the claim this request holds. Best effort: a claim neither
 * settled nor released blocks other bodies only CLAIM_PENDING_MS, and is then checked against
 * its target before it is replaced.
 */
async function endGrantClaim(
  env: Env,
  adminId: string,
  keyed: KeyedGrant,
  token: string | null,
  reply: StoredReply | null,
): Promise<void> {
  const admin = walletStub(env, adminId);
  try {
    if (reply?.status === 201) await admin.settleGrantKey(keyed.key, keyed.targetId, keyed.fingerprint);
    else if (token !== null) await admin.releaseGrantKey(keyed.key, token);
  } catch (error) {
    log.warn("grant_claim_end_failed", { adminId, targetId: keyed.targetId, settled: reply?.status === 201, error });
  }
}

/**
 * The grant in the granted user's object: a stored outcome answers first, from that object alone
 * (no D1 read for a replay); then the user lookup (404), then the grant or the caller's refusal.
 */
async function grantInTarget(
  env: Env,
  config: Config,
  caller: { adminId: string; requestId: string; refusal: PreCheckRefusal | null },
  userId: string,
  body: { amount: number; reason: string },
  keyed: KeyedGrant | null,
  waitUntil: WaitUntil,
): Promise<StoredReply> {
  const { adminId, requestId, refusal } = caller;
  const wallet = walletStub(env, userId);
  const idempotencyKey = keyed?.key ?? null;
  const fingerprint = keyed?.fingerprint ?? null;
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
