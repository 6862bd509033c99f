import { DurableObject } from "cloudflare:workers";
import { createDb } from "../../db/client";
import { getConfig } from "../../lib/config";
import { errorBody, successBody } from "../../lib/envelope";
import { type Outcome, refuse } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { newId } from "../../lib/ids";
import type { Message } from "../../schemas/message";
import type { Grant, Limits, Transfer, Wallet } from "../../schemas/wallet";
import { postCreditTransferMessage } from "../../services/messages";
import { publish } from "../../services/realtime";
import {
  type IncomingRow,
  incomingPage,
  type OutgoingRow,
  outgoingPage,
  type TransferSides,
  transferSides,
  type WalletBooks,
  walletBooks,
} from "./wallet-books";
import {
  type EntryRow,
  type GrantRow,
  migrate,
  type RefusalRow,
  type TransferInRow,
  type TransferOutRow,
  type WalletRow,
} from "./wallet-schema";
import { walletStub } from "./wallet-stub";
import { recordEntry } from "./wallet-totals";
import {
  type CreditCommand,
  type FaultPoint,
  type GrantCommand,
  type LedgerRow,
  RECOVERY_DELAY_MS,
  type StoredReply,
  TRANSFER_WINDOW_HOURS,
  type TransferCommand,
  WINDOW_MINUTES,
} from "./wallet-types";

/** The note of the welcome grant's ledger entry. */
export const WELCOME_GRANT_NOTE = "Welcome credits";

/** How a transfer request starts inside the sender's one synchronous transaction. */
type Start =
  | { kind: "reply"; reply: StoredReply }
  | { kind: "refused"; refusal: ReturnType<typeof refuse> }
  | { kind: "continue"; row: TransferOutRow; replayed: boolean };

/**
 * One wallet per user (`idFromName(userId)`), SQLite-backed. It serializes that wallet's credit
 * movements and coordinates the transfers it sends (ARCHITECTURE.md §4). Every method is an RPC
 * whose refusals are values (`Outcome`), never thrown custom errors.
 *
 * Opening: `open(userId, signupCredits)` creates the wallet and applies the welcome grant exactly
 * once. Registration calls it; every other entry point on behalf of the owner opens the wallet
 * first too (`ensureOpen`), so a user whose registration died between the D1 insert and `open`
 * still gets the grant on first use, and the recipient of a first transfer needs no extra step.
 * Only the reconciliation reads (`books`, `outgoingPage`, `incomingPage`, `transferSides`) read without opening.
 *
 * Transfer protocol (sender side):
 *   1. one transactionSync, no await: idempotency lookup → balance and rolling-limit checks →
 *      debit + `transfer_out` entry + `pending` transfer; the recovery alarm is set in the same
 *      output-gated turn;
 *   2. post the `credit_transfer` message in D1 (keyed by transfer id);
 *   3. `credit()` on the recipient's object (keyed by (transfer id, kind));
 *   4. one transactionSync: mark `posted` and store the exact response.
 * The message goes before the credit so the recipient's `transfer_in` entry and its transfer
 * record carry the message and chat ids in the one credit call; both steps are keyed by the
 * transfer id, so their order does not matter for correctness. No storage transaction spans an
 * await, so A→B and B→A at once cannot deadlock; while this object awaits D1 or the recipient,
 * other requests to it run (the debit already reserved the credits).
 * Steps 2–4 are repeated by the alarm, by a retry with the same key and by a read of the
 * transfer until it is posted; every step is idempotent, so repeating is always safe.
 */
export class WalletDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** The alarm time this object last set (null: none), so frequent transfers do not keep pushing it later. */
  private alarmAt: number | null = null;
  /** Test-only fault switch (see `armFault`). */
  private readonly armedFaults = new Map<FaultPoint, { left: number; mode: "stop" | "crash" }>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // ------------------------------------------------------------------ RPC: owner's reads and opening

  /** Idempotent: the first call creates the wallet with the `signupCredits` grant; later calls change nothing. */
  open(userId: string, signupCredits: number): Outcome<Wallet> {
    const row = this.transactAndNotify(() => this.ensureOpen(userId, signupCredits, Date.now()));
    return { ok: true, value: toWallet(row) };
  }

  /** Newest first; `beforeSeq` continues a page. Returns `limit + 1` rows when there are more. */
  transactions(userId: string, signupCredits: number, limit: number, beforeSeq: number | null): Outcome<LedgerRow[]> {
    this.open(userId, signupCredits);
    const rows = this.sql
      .exec<EntryRow>(
        "SELECT * FROM entries WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        beforeSeq ?? Number.MAX_SAFE_INTEGER,
        limit + 1,
      )
      .toArray();
    return { ok: true, value: rows.map(toLedgerRow) };
  }

  limits(userId: string, signupCredits: number, perTransferMax: number, dailyLimit: number): Outcome<Limits> {
    this.open(userId, signupCredits);
    const used = this.windowUsed(Date.now());
    return {
      ok: true,
      value: {
        perTransferMax,
        windowHours: TRANSFER_WINDOW_HOURS,
        windowLimit: dailyLimit,
        windowUsed: used,
        windowRemaining: Math.max(0, dailyLimit - used),
      },
    };
  }

  /**
   * A transfer this wallet sent or received. A sent one still pending is finished first (the
   * client that timed out and asks here gets the real outcome, not "unknown").
   */
  async getTransfer(userId: string, signupCredits: number, transferId: string): Promise<Outcome<Transfer>> {
    this.open(userId, signupCredits);
    const out = this.transferOut(transferId);
    if (out) {
      const posted = out.state === "posted" ? out : (await this.finish(out), this.transferOut(transferId)!);
      return { ok: true, value: this.toTransfer(posted) };
    }
    const incoming = this.sql.exec<TransferInRow>("SELECT * FROM transfers_in WHERE transfer_id = ?", transferId).toArray()[0];
    if (incoming) {
      return {
        ok: true,
        value: {
          senderId: incoming.sender_id,
          recipientId: userId,
          transferredAmount: incoming.amount,
          senderBalance: incoming.sender_balance,
          recipientBalance: incoming.recipient_balance,
          transferId: incoming.transfer_id,
          messageId: incoming.message_id,
          chatId: incoming.chat_id,
          createdAt: iso(incoming.created_at),
        },
      };
    }
    return refuse("transfer_not_found", `No transfer ${transferId} sent or received by you`);
  }

  // ------------------------------------------------------------------ RPC: the transfer protocol

  /** Sender side of a transfer (the class comment has the steps). */
  async transfer(command: TransferCommand): Promise<Outcome<StoredReply>> {
    const now = Date.now();
    // A debit is pushed with the transfer's announcement (announceTransfer), not here; only a
    // wallet this request opened without debiting it (a refusal, a replay) is pushed at once.
    const start = this.transactAndNotify(
      () => this.begin(command, now),
      (begun) => begun.kind === "continue" && !begun.replayed,
    );
    if (start.kind === "refused") return start.refusal;
    if (start.kind === "reply") return { ok: true, value: start.reply };
    // Same turn as the commit above, so the debit and its recovery alarm are written together.
    this.scheduleAlarm(now + RECOVERY_DELAY_MS);
    try {
      this.fault("after_debit");
      const reply = await this.finish(start.row);
      this.fault("after_posted");
      return { ok: true, value: { ...reply, replayed: start.replayed } };
    } catch (error) {
      // An injected stop leaves the books exactly as a crash there would and answers the same 500,
      // without filling test logs with the runtime's report of a thrown RPC error.
      if (error instanceof InjectedFault) return refuse("internal_error", error.message);
      throw error;
    }
  }

  /**
   * Recipient side: idempotent on (transfer id, `transfer_in`); a repeat returns the first
   * credit's balance after and time, and changes nothing. Pushes nothing itself: the sender
   * announces the credit with the transfer (announceTransfer), `updatedAt` being what that
   * `wallet.updated` needs. When this call opened the wallet, that same frame shows the welcome
   * grant too (the balance after the credit includes it).
   */
  credit(command: CreditCommand): Outcome<{ balanceAfter: number; updatedAt: string }> {
    return this.ctx.storage.transactionSync(() => {
      const now = Date.now();
      this.ensureOpen(command.recipientId, command.signupCredits, now);
      const existing = this.sql
        .exec<{ balance_after: number; created_at: number }>(
          "SELECT balance_after, created_at FROM entries WHERE transfer_id = ? AND kind = 'transfer_in'",
          command.transferId,
        )
        .toArray()[0];
      if (existing) {
        return { ok: true, value: { balanceAfter: existing.balance_after, updatedAt: iso(existing.created_at) } };
      }
      const balanceAfter = this.applyCredit(
        command.transferId,
        "transfer_in",
        command.amount,
        command.senderId,
        command.messageId,
        command.note,
        now,
      );
      this.sql.exec(
        "INSERT INTO transfers_in (transfer_id, sender_id, amount, note, sender_balance, recipient_balance, message_id, chat_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        command.transferId,
        command.senderId,
        command.amount,
        command.note,
        command.senderBalance,
        balanceAfter,
        command.messageId,
        command.chatId,
        command.createdAt,
      );
      return { ok: true, value: { balanceAfter, updatedAt: iso(now) } };
    });
  }

  /** Admin grant: credits from nowhere, recorded as a `grant` entry; idempotent per (admin, key). */
  grant(command: GrantCommand): Outcome<StoredReply> {
    return this.transactAndNotify(() => {
      const now = Date.now();
      this.ensureOpen(command.userId, command.signupCredits, now);
      // Scope of a key: the admin who sent it (API.md §1), within this wallet.
      const scopedKey = command.idempotencyKey === null ? null : `${command.grantedBy}:${command.idempotencyKey}`;
      if (scopedKey !== null) {
        const known = this.sql.exec<GrantRow>("SELECT * FROM grants WHERE idempotency_key = ?", scopedKey).toArray()[0];
        if (known) {
          if (known.fingerprint !== command.fingerprint) return keyReused();
          return { ok: true, value: { status: 201, body: known.response!, replayed: true } };
        }
      }
      const grantId = newId(now);
      const balance = this.applyCredit(grantId, "grant", command.amount, null, null, command.reason, now);
      const grant: Grant = { grantId, userId: command.userId, amount: command.amount, balance };
      const body = JSON.stringify(successBody(grant, 201));
      this.sql.exec(
        "INSERT INTO grants (grant_id, idempotency_key, fingerprint, granted_by, amount, reason, balance_after, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        grantId,
        scopedKey,
        command.fingerprint,
        command.grantedBy,
        command.amount,
        command.reason,
        balance,
        scopedKey === null ? null : body,
        now,
      );
      if (scopedKey !== null) this.scheduleAlarm(now + IDEMPOTENCY_RETENTION_MS);
      return { ok: true, value: { status: 201, body, replayed: false } };
    });
  }

  // ------------------------------------------------------------------ RPC: reconciliation (wallet-books.ts)

  /** This wallet's books for a reconciliation run, in O(1) (its running totals); never opens the wallet. */
  books(userId: string, horizon: { cutoffAt: number; stuckBefore: number; inFlightHorizonMs: number }): WalletBooks {
    return walletBooks(this.sql, userId, horizon);
  }

  /** A page of the transfers this wallet sent, by transfer id. */
  outgoingPage(afterId: string, limit: number): OutgoingRow[] {
    return outgoingPage(this.sql, afterId, limit);
  }

  /** A page of the credits this wallet received, by transfer id. */
  incomingPage(afterId: string, limit: number): IncomingRow[] {
    return incomingPage(this.sql, afterId, limit);
  }

  /** One transfer as this wallet's books show it, for the run's re-read of anything that looked wrong. */
  transferSides(transferId: string): TransferSides {
    return transferSides(this.sql, transferId);
  }

  // ------------------------------------------------------------------ alarm: recovery and cleanup

  /**
   * Finishes every pending transfer (at-least-once: any step may have run already) and drops
   * idempotency records older than the retention. Reschedules itself while work remains.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const pending = this.sql
      .exec<TransferOutRow>("SELECT * FROM transfers_out WHERE state = 'pending' ORDER BY created_at")
      .toArray();
    let failures = 0;
    for (const row of pending) {
      try {
        await this.finish(row);
      } catch (error) {
        failures += 1;
        console.error(
          JSON.stringify({
            level: "error",
            event: "transfer_recovery_failed",
            transferId: row.transfer_id,
            message: String(error),
          }),
        );
      }
    }
    const now = Date.now();
    this.cleanup(now);
    const stillPending = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'pending'").one().n;
    if (stillPending > 0) {
      const attempts = this.sql
        .exec<{ a: number }>("SELECT MAX(attempts) AS a FROM transfers_out WHERE state = 'pending'")
        .one().a;
      // Back off on repeated failures (D1 or the recipient down), up to 5 minutes.
      const delay = failures > 0 ? Math.min(RECOVERY_DELAY_MS * 2 ** Math.min(attempts, 6), 300_000) : RECOVERY_DELAY_MS;
      this.scheduleAlarm(now + delay);
      return;
    }
    const oldestKey = this.sql
      .exec<{ t: number | null }>(
        `SELECT MIN(t) AS t FROM (
           SELECT MIN(created_at) AS t FROM transfers_out WHERE idempotency_key IS NOT NULL
           UNION ALL SELECT MIN(created_at) FROM refusals
           UNION ALL SELECT MIN(created_at) FROM grants WHERE idempotency_key IS NOT NULL)`,
      )
      .one().t;
    if (oldestKey !== null) this.scheduleAlarm(oldestKey + IDEMPOTENCY_RETENTION_MS + 1);
  }

  // ------------------------------------------------------------------ test-only fault switch

  /**
   * Makes the next `times` transfers through this object throw right after `point`, as a crash
   * there would. Only in the test harness: it needs the TEST_FAULT_INJECTION binding, which exists
   * only in vitest.config.ts's miniflare bindings, AND `ENVIRONMENT = "local"`; anywhere else it
   * throws. No route calls it; tests reach it with `runInDurableObject`.
   */
  armFault(point: FaultPoint, times = 1, mode: "stop" | "crash" = "stop"): void {
    if (!faultInjectionEnabled(this.env)) throw new Error("fault injection is only available in the test harness");
    this.armedFaults.set(point, { left: times, mode });
  }

  /** "stop": the protocol stops there and the caller gets 500. "crash": the object is reset there (ctx.abort), memory lost. */
  private fault(point: FaultPoint): void {
    const armed = this.armedFaults.get(point);
    if (!armed) return;
    if (armed.left <= 1) this.armedFaults.delete(point);
    else armed.left -= 1;
    if (armed.mode === "crash") this.ctx.abort(`injected crash ${point}`);
    throw new InjectedFault(`injected fault ${point}`);
  }

  // ------------------------------------------------------------------ internals

  /** Step 1, inside one transactionSync. */
  private begin(command: TransferCommand, now: number): Start {
    this.ensureOpen(command.senderId, command.signupCredits, now);
    const key = command.idempotencyKey;
    if (key !== null) {
      const known = this.sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE idempotency_key = ?", key).toArray()[0];
      if (known) {
        if (known.fingerprint !== command.fingerprint) return { kind: "refused", refusal: keyReused() };
        if (known.state === "posted") return { kind: "reply", reply: { status: 201, body: known.response!, replayed: true } };
        return { kind: "continue", row: known, replayed: true };
      }
      const refused = this.sql.exec<RefusalRow>("SELECT * FROM refusals WHERE idempotency_key = ?", key).toArray()[0];
      if (refused) {
        if (refused.fingerprint !== command.fingerprint) return { kind: "refused", refusal: keyReused() };
        return { kind: "reply", reply: { status: 409, body: refused.response, replayed: true } };
      }
    }
    const balance = this.walletRow()!.balance;
    if (balance < command.amount) {
      return this.refuseStored(command, now, "insufficient_balance", [
        `Insufficient balance: ${balance} available, ${command.amount} requested`,
      ]);
    }
    const used = this.windowUsed(now);
    if (used + command.amount > command.dailyLimit) {
      return this.refuseStored(command, now, "transfer_limit_exceeded", [
        `Transfer limit exceeded: ${used} of ${command.dailyLimit} credits sent in the last ${TRANSFER_WINDOW_HOURS} hours, ${command.amount} requested`,
      ]);
    }
    const transferId = newId(now);
    const senderBalance = balance - command.amount;
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", senderBalance, now);
    this.insertEntry(transferId, "transfer_out", -command.amount, senderBalance, command.recipientId, null, command.note, now);
    this.countSent(command.amount, now);
    this.sql.exec(
      "INSERT INTO transfers_out (transfer_id, idempotency_key, fingerprint, state, recipient_id, amount, note, sender_balance, created_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
      transferId,
      key,
      command.fingerprint,
      command.recipientId,
      command.amount,
      command.note,
      senderBalance,
      now,
    );
    return { kind: "continue", row: this.transferOut(transferId)!, replayed: false };
  }

  /** A business refusal that was executed: stored under the key (if any) and replayed later. */
  private refuseStored(
    command: TransferCommand,
    now: number,
    code: "insufficient_balance" | "transfer_limit_exceeded",
    details: string[],
  ): Start {
    const body = JSON.stringify(errorBody(409, code, details));
    if (command.idempotencyKey !== null) {
      this.sql.exec(
        "INSERT INTO refusals (idempotency_key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)",
        command.idempotencyKey,
        command.fingerprint,
        body,
        now,
      );
      this.scheduleAlarm(now + IDEMPOTENCY_RETENTION_MS);
    }
    return { kind: "reply", reply: { status: 409, body, replayed: false } };
  }

  /** Steps 2–4 for a debited transfer; safe to repeat and to run concurrently with itself. */
  private async finish(row: TransferOutRow): Promise<StoredReply> {
    if (row.state === "posted") return { status: 201, body: row.response!, replayed: false };
    this.sql.exec("UPDATE transfers_out SET attempts = attempts + 1 WHERE transfer_id = ?", row.transfer_id);
    const senderId = this.walletRow()!.user_id;
    const message = await postCreditTransferMessage(createDb(this.env.DB), {
      transferId: row.transfer_id,
      senderId,
      recipientId: row.recipient_id,
      amount: row.amount,
      note: row.note,
      createdAt: row.created_at,
    });
    this.fault("after_message");
    const credit = await walletStub(this.env, row.recipient_id).credit({
      transferId: row.transfer_id,
      senderId,
      recipientId: row.recipient_id,
      amount: row.amount,
      note: row.note,
      senderBalance: row.sender_balance,
      messageId: message.id,
      chatId: message.chatId,
      createdAt: row.created_at,
      signupCredits: getConfig(this.env).signupCredits,
    });
    if (!credit.ok) throw new Error(`credit of transfer ${row.transfer_id} refused: ${credit.code}`);
    this.fault("after_credit");
    // No await between this read and the commit below: exactly one finisher posts it, and announces it.
    const postingNow = this.transferOut(row.transfer_id)?.state === "pending";
    const reply = this.ctx.storage.transactionSync(() => {
      const current = this.transferOut(row.transfer_id)!;
      // A concurrent finisher (alarm, retry) may have posted it meanwhile: its response is the response.
      if (current.state === "posted") return { status: 201 as const, body: current.response!, replayed: false };
      const transfer: Transfer = {
        senderId,
        recipientId: row.recipient_id,
        transferredAmount: row.amount,
        senderBalance: row.sender_balance,
        recipientBalance: credit.value.balanceAfter,
        transferId: row.transfer_id,
        messageId: message.id,
        chatId: message.chatId,
        createdAt: iso(row.created_at),
      };
      const body = JSON.stringify(successBody(transfer, 201));
      this.sql.exec(
        "UPDATE transfers_out SET state = 'posted', recipient_balance = ?, message_id = ?, chat_id = ?, response = ?, posted_at = ? WHERE transfer_id = ?",
        credit.value.balanceAfter,
        message.id,
        message.chatId,
        body,
        Date.now(),
        row.transfer_id,
      );
      this.sql.exec(
        "UPDATE entries SET message_id = ? WHERE transfer_id = ? AND kind = 'transfer_out'",
        message.id,
        row.transfer_id,
      );
      return { status: 201 as const, body, replayed: false };
    });
    if (postingNow) {
      const transfer = (JSON.parse(reply.body) as { data: Transfer }).data;
      this.announceTransfer(transfer, message, iso(row.created_at), credit.value.updatedAt);
    }
    return reply;
  }

  /**
   * Realtime (docs/realtime.md), once per transfer, after it is posted: one push per person, so one
   * RealtimeDO call each. The sender gets its wallet right after the debit and the credit_transfer
   * message; the recipient its wallet right after the credit, the message and the transfer.
   * The balance changes go out here rather than when they commit because every frame for a person
   * then costs one call instead of two or three (the transfer path's largest cost after the
   * commits); the price is that a transfer still pending (recipient unreachable, D1 down) shows
   * the sender's debit only when it posts, whoever posts it (request, retry, read or alarm). The
   * frames carry each wallet as of its own change (`updatedAt`), which a client compares with what
   * it already has. Never throws.
   */
  private announceTransfer(transfer: Transfer, message: Message, debitedAt: string, creditedAt: string): void {
    const waitUntil = (promise: Promise<unknown>) => this.ctx.waitUntil(promise);
    publish(
      this.env,
      waitUntil,
      [transfer.senderId],
      [
        {
          type: "wallet.updated",
          data: { userId: transfer.senderId, balance: transfer.senderBalance, updatedAt: debitedAt },
        },
        { type: "message.created", data: message },
      ],
    );
    publish(
      this.env,
      waitUntil,
      [transfer.recipientId],
      [
        {
          type: "wallet.updated",
          data: { userId: transfer.recipientId, balance: transfer.recipientBalance, updatedAt: creditedAt },
        },
        { type: "message.created", data: message },
        { type: "transfer.received", data: transfer },
      ],
    );
  }

  /**
   * One storage transaction; when it changed this wallet (balance, or the wallet opened), the owner
   * gets `wallet.updated` after the commit, unless `announcedLater(result)` says the change is a
   * transfer's debit, which announceTransfer pushes. Nothing is awaited between the reads and the
   * commit, so the comparison sees exactly this transaction's effect.
   */
  private transactAndNotify<T>(run: () => T, announcedLater: (result: T) => boolean = () => false): T {
    const before = this.walletRow();
    const result = this.ctx.storage.transactionSync(run);
    if (announcedLater(result)) return result;
    const after = this.walletRow();
    if (after && (before?.balance !== after.balance || before.updated_at !== after.updated_at)) {
      publish(this.env, (promise) => this.ctx.waitUntil(promise), [after.user_id], {
        type: "wallet.updated",
        data: toWallet(after),
      });
    }
    return result;
  }

  private cleanup(now: number): void {
    const cutoff = now - IDEMPOTENCY_RETENTION_MS;
    this.ctx.storage.transactionSync(() => {
      // Transfers themselves stay (history, GET /wallets/me/transfers/{id}); only their key and stored reply go.
      this.sql.exec(
        "UPDATE transfers_out SET idempotency_key = NULL, fingerprint = NULL, response = NULL WHERE state = 'posted' AND idempotency_key IS NOT NULL AND created_at < ?",
        cutoff,
      );
      this.sql.exec("DELETE FROM refusals WHERE created_at < ?", cutoff);
      this.sql.exec(
        "UPDATE grants SET idempotency_key = NULL, fingerprint = NULL, response = NULL WHERE idempotency_key IS NOT NULL AND created_at < ?",
        cutoff,
      );
    });
  }

  private scheduleAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  private walletRow(): WalletRow | undefined {
    return this.sql.exec<WalletRow>("SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1").toArray()[0];
  }

  private transferOut(transferId: string): TransferOutRow | undefined {
    return this.sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE transfer_id = ?", transferId).toArray()[0];
  }

  /** Credits sent in the rolling window (see WINDOW_MINUTES). */
  private windowUsed(now: number): number {
    return this.sql
      .exec<{ used: number }>(
        "SELECT COALESCE(SUM(amount), 0) AS used FROM sent_by_minute WHERE minute >= ?",
        minuteOf(now) - WINDOW_MINUTES,
      )
      .one().used;
  }

  /** Counts a debit in its minute and forgets minutes that left the window. Inside transactionSync. */
  private countSent(amount: number, now: number): void {
    const minute = minuteOf(now);
    this.sql.exec(
      "INSERT INTO sent_by_minute (minute, amount) VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET amount = amount + excluded.amount",
      minute,
      amount,
    );
    this.sql.exec("DELETE FROM sent_by_minute WHERE minute < ?", minute - WINDOW_MINUTES);
  }

  /** Must run inside transactionSync. */
  private ensureOpen(userId: string, signupCredits: number, now: number): WalletRow {
    const existing = this.walletRow();
    if (existing) {
      if (existing.user_id !== userId) throw new Error(`wallet of ${existing.user_id} addressed as ${userId}`);
      return existing;
    }
    this.sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, 0, ?, ?)", userId, now, now);
    // Exactly once because the wallet row is created in this same transaction. Its id is a plain
    // 24-hex id like every other (API.md IDs); the welcome grant is the `grant` entry with no
    // `grants` row (admin grants have one), the first entry of the ledger, noted "Welcome credits".
    if (signupCredits > 0) this.applyCredit(newId(now), "grant", signupCredits, null, null, WELCOME_GRANT_NOTE, now);
    return this.walletRow()!;
  }

  /** Adds `amount` (> 0) and writes its entry; returns the balance after. Inside transactionSync. */
  private applyCredit(
    transferId: string,
    kind: "grant" | "transfer_in",
    amount: number,
    counterpartyId: string | null,
    messageId: string | null,
    note: string | null,
    now: number,
  ): number {
    const balance = this.walletRow()!.balance + amount;
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", balance, now);
    this.insertEntry(transferId, kind, amount, balance, counterpartyId, messageId, note, now);
    return balance;
  }

  private insertEntry(
    transferId: string,
    kind: EntryRow["kind"],
    amount: number,
    balanceAfter: number,
    counterpartyId: string | null,
    messageId: string | null,
    note: string | null,
    now: number,
  ): void {
    this.sql.exec(
      "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, message_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      newId(now),
      transferId,
      kind,
      amount,
      balanceAfter,
      counterpartyId,
      messageId,
      note,
      now,
    );
    recordEntry(this.sql, kind, amount, balanceAfter);
  }

  private toTransfer(row: TransferOutRow): Transfer {
    return {
      senderId: this.walletRow()!.user_id,
      recipientId: row.recipient_id,
      transferredAmount: row.amount,
      senderBalance: row.sender_balance,
      recipientBalance: row.recipient_balance!,
      transferId: row.transfer_id,
      messageId: row.message_id!,
      chatId: row.chat_id!,
      createdAt: iso(row.created_at),
    };
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

/** What the test-only fault switch throws. */
class InjectedFault extends Error {
  override readonly name = "InjectedFault";
}

const keyReused = () => refuse("idempotency_key_reused", "This Idempotency-Key was already used with a different request body");

function toWallet(row: WalletRow): Wallet {
  return { userId: row.user_id, balance: row.balance, updatedAt: iso(row.updated_at) };
}

function toLedgerRow(row: EntryRow): LedgerRow {
  return {
    seq: row.seq,
    id: row.id,
    transferId: row.transfer_id,
    kind: row.kind,
    amount: row.amount,
    balanceAfter: row.balance_after,
    counterpartyId: row.counterparty_id,
    messageId: row.message_id,
    note: row.note,
    createdAt: row.created_at,
  };
}

/** The test-only switch: a binding only vitest.config.ts defines, and the local environment. */
export function faultInjectionEnabled(env: Env): boolean {
  const bindings = env as unknown as Record<string, unknown>;
  return bindings.TEST_FAULT_INJECTION === "on" && bindings.ENVIRONMENT === "local";
}
