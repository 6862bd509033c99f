import { errorBody, successBody } from "../../lib/envelope";
import { invariant, type Refusal, refuse } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { newId } from "../../lib/ids";
import { hitStoredWindow, type RateLimitDecision, rateLimitedRefusal } from "../../lib/sliding-window";
import type { Message } from "../../schemas/message";
import type { Ledger } from "./ledger";
import { sessionEndedRefusal } from "./sessions";
import { endedReply, sentTransfer, toWallet } from "./views";
import type { RefusalRow, TransferOutRow } from "./wallet-schema";
import {
  type CreditResult,
  IN_FLIGHT_MS,
  type PreCheckRefusal,
  type StoredReply,
  TRANSFER_WINDOW_HOURS,
  type TransferCommand,
  type TransferEvent,
  type TransferResult,
} from "./wallet-types";

/** Where the owner's transfer rate-limit window lives (ctx.storage.kv, inside the transaction). */
const RATE_BUCKETS_KEY = "transfer_rate_buckets";

/** How a transfer request starts, decided inside the sender's one synchronous transaction. */
export type Begun =
  | { kind: "answered"; result: TransferResult }
  | { kind: "continue"; row: TransferOutRow; replayed: boolean; rateLimit: RateLimitDecision | null };

/** A transfer at its end: the reply it stores, and the event when this call is the one that ended it. */
export type Ending = { reply: StoredReply; event: TransferEvent | null };

const keyReused = (): Refusal =>
  refuse("idempotency_key_reused", "This Idempotency-Key was already used with a different request body");

const preCheckRefused = (refusal: PreCheckRefusal): Refusal => ({ ok: false, code: refusal.code, details: refusal.details });

/**
 * The sender's side of a transfer as synchronous steps, each run inside the caller's
 * `transactionSync` (no await): step 1 (`begin`: a known key answered, the checks, the debit and
 * the `pending` transfer) and step 5 (`endPosted` / `endVoided`). The asynchronous steps between
 * them are `Finisher`'s.
 */
export class Sender {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly ledger: Ledger,
    /** Asks for the alarm at `at` (a stored refusal's key expires then). */
    private readonly wakeAt: (at: number) => void,
    /** Whether a session of the owner has not ended (sessions.ts). */
    private readonly sessionLive: (sessionId: string) => boolean,
  ) {}

  senderId(): string {
    return this.ledger.wallet().user_id;
  }

  transferOut(transferId: string): TransferOutRow | undefined {
    return this.storage.sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE transfer_id = ?", transferId).toArray()[0];
  }

  /** Whether this wallet holds an outcome (ended or in flight) for the owner's transfer key. */
  knowsKey(idempotencyKey: string): boolean {
    const sql = this.storage.sql;
    return (
      sql.exec("SELECT 1 FROM transfers_out WHERE idempotency_key = ?", idempotencyKey).toArray().length > 0 ||
      sql.exec("SELECT 1 FROM refusals WHERE idempotency_key = ?", idempotencyKey).toArray().length > 0
    );
  }

  /**
   * Step 1: a key with a stored outcome answers it first (API.md §1); else the checks, in the order
   * a client sees them, the caller's session first (read here, in the same transaction as the debit).
   */
  begin(command: TransferCommand, now: number): Begun {
    this.ledger.open(command.senderId, command.signupCredits, now);
    const known = command.idempotencyKey === null ? null : this.knownKey(command.idempotencyKey, command.fingerprint, now);
    if (known) return known;
    const answered = (result: TransferResult): Begun => ({ kind: "answered", result });
    if (!this.sessionLive(command.sessionId)) return answered(sessionEndedRefusal());
    if (command.refusal?.code === "validation_failed") return answered(preCheckRefused(command.refusal));
    // The owner's transfer requests per minute, counted after the key lookup.
    const rateLimit = hitStoredWindow(this.storage.kv, RATE_BUCKETS_KEY, command.ratePerMinute, now);
    if (!rateLimit.allowed) return answered(rateLimitedRefusal(rateLimit));
    if (command.refusal) return answered(preCheckRefused(command.refusal));
    const balance = this.ledger.wallet().balance;
    if (balance < command.amount) {
      const detail = `Insufficient balance: ${balance} available, ${command.amount} requested`;
      return answered(this.refuseStored(command, now, rateLimit, "insufficient_balance", detail));
    }
    const used = this.ledger.windowUsed(now);
    if (used + command.amount > command.dailyLimit) {
      const detail = `Transfer limit exceeded: ${used} of ${command.dailyLimit} credits sent in the last ${TRANSFER_WINDOW_HOURS} hours, ${command.amount} requested`;
      return answered(this.refuseStored(command, now, rateLimit, "transfer_limit_exceeded", detail));
    }
    return { kind: "continue", row: this.debit(command, now), replayed: false, rateLimit };
  }

  /** Step 5, credited: posted with its 201. Exactly one finisher commits it and gets the event. */
  endPosted(transferId: string, credit: CreditResult & { credited: true }, message: Message, now: number): Ending {
    const current = this.transferOut(transferId);
    invariant(current, `transfer ${transferId} disappeared`);
    invariant(current.state !== "voided", `transfer ${transferId} credited by its recipient but voided here`);
    if (current.state === "posted") return { reply: endedReply(current, false), event: null };
    invariant(message.id === current.message_id, `transfer ${transferId} posted as message ${message.id}`);
    const senderId = this.ledger.wallet().user_id;
    const posted: TransferOutRow = {
      ...current,
      state: "posted",
      recipient_balance: credit.balanceAfter,
      chat_id: message.chatId,
    };
    const transfer = sentTransfer(senderId, posted);
    const body = JSON.stringify(successBody(transfer, 201));
    this.storage.sql.exec(
      "UPDATE transfers_out SET state = 'posted', recipient_balance = ?, chat_id = ?, response = ?, posted_at = ? WHERE transfer_id = ?",
      credit.balanceAfter,
      message.chatId,
      body,
      now,
      transferId,
    );
    this.ledger.linkMessage(transferId, message.id);
    this.ledger.transferEnded("posted", current.amount);
    return {
      reply: { status: 201, body, replayed: false },
      event: {
        kind: "posted",
        transfer: { ...transfer, recipientBalance: credit.balanceAfter, messageId: message.id, chatId: message.chatId },
        message,
        debitedAt: new Date(current.created_at).toISOString(),
        creditedAt: new Date(credit.creditedAt).toISOString(),
      },
    };
  }

  /**
   * Step 5, voided by the recipient: the amount comes back as a `reversal_in` entry and the
   * transfer is `voided` with its stored 409 `transfer_voided` (what a replay of its key answers).
   */
  endVoided(transferId: string, now: number): Ending {
    const current = this.transferOut(transferId);
    invariant(current, `transfer ${transferId} disappeared`);
    invariant(current.state !== "posted", `transfer ${transferId} voided by its recipient but posted here`);
    if (current.state === "voided") return { reply: endedReply(current, false), event: null };
    this.ledger.reverse(transferId, current.amount, current.recipient_id, current.created_at, now);
    const body = JSON.stringify(
      errorBody(409, "transfer_voided", [
        `Transfer ${transferId} was voided: its credit could not be delivered in time, so ${current.amount} credits went back to your balance and nothing reached the recipient. Send again with a new Idempotency-Key.`,
      ]),
    );
    this.storage.sql.exec(
      "UPDATE transfers_out SET state = 'voided', voided_at = ?, response = ? WHERE transfer_id = ?",
      now,
      body,
      transferId,
    );
    const voided = this.transferOut(transferId);
    invariant(voided?.state === "voided", `transfer ${transferId} not voided`);
    const wallet = this.ledger.wallet();
    return {
      reply: { status: 409, body, replayed: false },
      event: { kind: "voided", transfer: sentTransfer(wallet.user_id, voided), senderWallet: toWallet(wallet) },
    };
  }

  /** A key this wallet already holds: its stored outcome, its 409 for another body, or its pending transfer to go on with. */
  private knownKey(key: string, fingerprint: string | null, now: number): Begun | null {
    const sql = this.storage.sql;
    const answered = (result: TransferResult): Begun => ({ kind: "answered", result });
    const known = sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE idempotency_key = ?", key).toArray()[0];
    if (known) {
      if (known.fingerprint !== fingerprint) return answered(keyReused());
      if (known.state === "pending") return { kind: "continue", row: known, replayed: true, rateLimit: null };
      return answered({ ok: true, reply: endedReply(known, true), rateLimit: null, event: null });
    }
    const refused = sql.exec<RefusalRow>("SELECT * FROM refusals WHERE idempotency_key = ?", key).toArray()[0];
    // A message send's key is scoped to its chat (API.md §1: across scopes a key is not compared).
    if (!refused) return null;
    if (refused.fingerprint !== fingerprint) return answered(keyReused());
    return answered({ ok: true, reply: { status: 409, body: refused.response, replayed: true }, rateLimit: null, event: null });
  }

  /** The debit, its `transfer_out` entry and the `pending` transfer, its message id and void deadline fixed. */
  private debit(command: TransferCommand, now: number): TransferOutRow {
    const transferId = newId(now);
    const senderBalance = this.ledger.debit(transferId, command.amount, command.recipientId, command.note, now);
    this.storage.sql.exec(
      `INSERT INTO transfers_out (transfer_id, idempotency_key, fingerprint, state, recipient_id, amount, note, sender_balance,
         message_id, chat_id, created_at, void_at, retry_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      transferId,
      command.idempotencyKey,
      command.fingerprint,
      command.recipientId,
      command.amount,
      command.note,
      senderBalance,
      transferId,
      command.chatId,
      now,
      now + command.voidAfterMs,
      now + IN_FLIGHT_MS,
    );
    const row = this.transferOut(transferId);
    invariant(row?.state === "pending", `transfer ${transferId} not written`);
    return row;
  }

  /** A business refusal that was executed: stored under the key (if any) and replayed later. */
  private refuseStored(
    command: TransferCommand,
    now: number,
    rateLimit: RateLimitDecision,
    code: "insufficient_balance" | "transfer_limit_exceeded",
    detail: string,
  ): TransferResult {
    const body = JSON.stringify(errorBody(409, code, [detail]));
    if (command.idempotencyKey !== null) {
      this.storage.sql.exec(
        "INSERT INTO refusals (idempotency_key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)",
        command.idempotencyKey,
        command.fingerprint,
        body,
        now,
      );
      this.wakeAt(now + IDEMPOTENCY_RETENTION_MS);
    }
    return { ok: true, reply: { status: 409, body, replayed: false }, rateLimit, event: null };
  }
}
