import { type SQL, sql } from "drizzle-orm";
import { createDb } from "../db/client";
import { batchPrepared, preparedPerDatabase } from "../db/prepared";
import { isConnectedSql } from "../db/presence";
import { chats } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { PreCheckRefusal, StoredReply } from "../durable-objects/wallet/wallet-types";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import { requestFingerprint } from "../lib/idempotency";
import type { RateLimitDecision } from "../lib/sliding-window";
import type { TransferRequest } from "../schemas/wallet";
import { markCarriesTransfers } from "./chats";
import { walletKeyRegistration } from "./idempotency";
import { directKeyOf } from "./membership";
import type { WaitUntil } from "./realtime";
import { publishTransferEvent } from "./transfer-events";
import { assertSendToFacts, canSendToSql } from "./users";

/**
 * Credit transfers, Worker side (ARCHITECTURE.md §4 steps 0–2). One D1 batch reads what the
 * checks need (the sender's status, the recipient, a block, the pair's direct chat) and who of
 * the two has an open socket (realtime presence), and registers the Idempotency-Key; then one RPC
 * to the sender's WalletDO runs the rest. The Worker does not answer its own refusals: it hands
 * them to the wallet, which answers a key with a stored outcome first (API.md §1) and this
 * refusal only for a new request. So a transfer is two round trips: one
 * D1 batch, one wallet call (which makes the credit and message round trips itself).
 */

export const TRANSFER_PATH = "/api/v1/messages/credit-transfer";

export type TransferAnswer = { reply: StoredReply; rateLimit: RateLimitDecision | null };

/**
 * Everything a transfer's checks read, as ONE row built once per database and bound per request:
 * the sender's status, whether the recipient exists and blocked the sender, the pair's direct chat
 * id and who of the two has an open socket (realtime presence). No row: the sender is gone. The
 * caller's session is checked by the sender's object (sessions.ts), after a stored key outcome.
 */
const preparedTransferChecks = preparedPerDatabase((db) => {
  const [senderId, recipientId] = [sql.placeholder("senderId"), sql.placeholder("recipientId")];
  return canSendToSql(db, senderId, recipientId, {
    directChatId: sql<
      string | null
    >`(SELECT ${chats.id} FROM ${chats} WHERE ${chats.directKey} = ${sql.placeholder("directKey")})`.as("direct_chat_id"),
    senderConnected: isConnectedSql(senderId).as("sender_connected") as SQL.Aliased<boolean>,
    recipientConnected: isConnectedSql(recipientId).as("recipient_connected") as SQL.Aliased<boolean>,
  }).facts.prepare();
});

/**
 * Marks the pair's direct chat, if it exists, as carrying transfers (a no-op once it is), in the
 * checks' batch: before any transfer of the pair can append its message there. A pair with no chat
 * yet gets it marked when the wallet creates it after the credit (`transferDirectChat`).
 */
const preparedTransferChatMark = preparedPerDatabase((db) => markCarriesTransfers(db, sql.placeholder("directKey")).prepare());

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
  sessionId: string,
  body: TransferRequest,
  idempotencyKey: string | null,
  waitUntil: WaitUntil,
): Promise<TransferAnswer> {
  const db = createDb(env.DB);
  const input = { recipientId: body.recipientId, amount: body.amount, note: body.note ?? null };
  // The fingerprint covers the normalized body, so `note` omitted and `note: null` are the same request.
  const registration =
    idempotencyKey === null
      ? null
      : walletKeyRegistration(
          db,
          senderId,
          idempotencyKey,
          await requestFingerprint("POST", TRANSFER_PATH, input),
          `transfer:${senderId}`,
        );
  const values = { senderId, recipientId: input.recipientId, directKey: directKeyOf(senderId, input.recipientId) };
  const checks = preparedTransferChecks(db);
  const mark = preparedTransferChatMark(db);
  const facts = registration
    ? await batchPrepared(db, [checks, ...registration.queries, mark] as const, {
        ...values,
        ...registration.values,
      }).then(([f, , keyRows]) => {
        registration.assertOurs(keyRows);
        return f;
      })
    : (await batchPrepared(db, [checks, mark] as const, values))[0];
  const fact = facts[0];
  const connected = new Set([
    ...(fact?.senderConnected ? [senderId] : []),
    ...(fact?.recipientConnected ? [input.recipientId] : []),
  ]);

  const wallet = walletStub(env, senderId);
  let result: Awaited<ReturnType<typeof wallet.transfer>>;
  try {
    result = await wallet.transfer({
      senderId,
      ...input,
      idempotencyKey,
      fingerprint: registration?.fingerprint ?? null,
      refusal: preCheckRefusal(config, senderId, input, fact),
      sessionId,
      chatId: fact?.directChatId ?? null,
      signupCredits: config.signupCredits,
      dailyLimit: config.dailyTransferLimit,
      ratePerMinute: config.rateLimits.transfersPerMinute,
      voidAfterMs: config.transferVoidAfterMs,
    });
  } catch (error) {
    // 5xx stores nothing: the key goes back unless the wallet executed (then it is the wallet's).
    if (registration && idempotencyKey !== null) {
      const executed = await wallet.knowsTransferKey(idempotencyKey).catch(() => true);
      if (!executed) await registration.release().catch(() => undefined);
    }
    throw error;
  }
  if (!result.ok) {
    await registration?.release();
    throw new ApiError(result.code, result.details, result.headers);
  }
  if (result.event) publishTransferEvent(env, waitUntil, result.event, connected);
  return { reply: result.reply, rateLimit: result.rateLimit };
}

/**
 * The refusal a new request gets before any money moves, in API.md's order (after the sender's
 * object's 401 `session_ended`): 400 (amount over MAX_TRANSFER_AMOUNT, paying yourself), then 403
 * `account_suspended`, 404 `user_not_found`, 403 `recipient_blocked`. Null when the request may go on.
 */
function preCheckRefusal(
  config: Config,
  senderId: string,
  input: { recipientId: string; amount: number },
  facts: Parameters<typeof assertSendToFacts>[0] | undefined,
): PreCheckRefusal | null {
  const problems: string[] = [];
  if (input.amount > config.maxTransferAmount) problems.push(`amount: must be at most ${config.maxTransferAmount}`);
  if (input.recipientId === senderId) problems.push("recipientId: cannot be yourself");
  if (problems.length > 0) return { code: "validation_failed", details: problems };
  try {
    assertSendToFacts(facts, input.recipientId);
    return null;
  } catch (error) {
    if (error instanceof ApiError) return { code: error.code, details: error.details };
    throw error;
  }
}
