import { DurableObject } from "cloudflare:workers";
import { createDb } from "../../db/client";
import { getConfig } from "../../lib/config";
import { errorBody, successBody } from "../../lib/envelope";
import { invariant, type Outcome, type Refusal, refuse } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { newId } from "../../lib/ids";
import { type Bucket, hitWindow, type RateLimitDecision, rateLimitedDetail, rateLimitHeaders } from "../../lib/sliding-window";
import type { Message } from "../../schemas/message";
import type { Grant, Limits, TransferWithStatus, Wallet } from "../../schemas/wallet";
import { findOrCreateDirectChat } from "../../services/chats";
import { postCreditTransferMessages } from "../../services/messages";
import { publishTransferEvent } from "../../services/transfer-events";
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
  RECOVERY_SQL,
  type RefusalRow,
  type TransferInRow,
  type TransferOutRow,
  type VoidedInRow,
  type WalletRow,
} from "./wallet-schema";
import { walletStub } from "./wallet-stub";
import { recordEntry } from "./wallet-totals";
import {
  type CreditCommand,
  type CreditResult,
  type FaultPoint,
  type GrantCommand,
  IN_FLIGHT_MS,
  type LedgerRow,
  MAX_RETRY_DELAY_MS,
  type PreCheckRefusal,
  RECOVERY_PAGE,
  type StoredReply,
  TRANSFER_WINDOW_HOURS,
  type TransferCommand,
  type TransferEvent,
  type TransferResult,
  WINDOW_MINUTES,
} from "./wallet-types";

/** The note of the welcome grant's ledger entry. */
export const WELCOME_GRANT_NOTE = "Welcome credits";

/** The note of the `reversal_in` entry that gives a voided transfer's amount back. */
export const VOID_NOTE = "Transfer voided: its credit could not be delivered";

/** Where the owner's transfer rate-limit window lives (ctx.storage.kv, inside the transaction). */
const RATE_BUCKETS_KEY = "transfer_rate_buckets";

/** Key expiry rows touched per statement per alarm run; the alarm comes back for the rest. */
const EXPIRY_BATCH = 500;

/** How a transfer request starts, decided inside the sender's one synchronous transaction. */
type Begun =
  | { kind: "answered"; result: TransferResult }
  | { kind: "continue"; row: TransferOutRow; replayed: boolean; rateLimit: RateLimitDecision | null };

/** A transfer at its end: the reply it stores, and the event when this call is the one that ended it. */
type Ending = { reply: StoredReply; event: TransferEvent | null };

/** A transfer request waiting for its group (see `transfer`). */
type Waiting = { command: TransferCommand; answer: (result: TransferResult) => void; fail: (error: unknown) => void };

/**
 * The most transfer requests one group commits together: bounds the D1 batch of their messages
 * (seven statements each) and how long the last of a group waits for the first.
 */
export const MAX_GROUP = 32;

/**
 * One wallet per user (`idFromName(userId)`), SQLite-backed: the ledger and the transfer protocol,
 * nothing else (realtime is published by the caller from what these methods return; the books are
 * checked by reconciliation). Every method is an RPC whose refusals are values (`Outcome`), never
 * thrown custom errors.
 *
 * Opening: `open(userId, signupCredits)` creates the wallet and applies the welcome grant exactly
 * once; every entry point on behalf of the owner opens it first too (`ensureOpen`), so a user whose
 * registration died between the D1 insert and `open` still gets the grant on first use. Only the
 * reconciliation reads (`books`, `outgoingPage`, `incomingPage`, `transferSides`) and a void read
 * or write without opening.
 *
 * Transfer protocol, sender side (docs/wallets.md; API.md "Every transfer ends"):
 *   1. one transactionSync, no await: a key with a stored outcome answers it (before any check);
 *      else the Worker's pre-check refusal, the per-minute rate limit, the balance and the rolling
 *      limit; then the debit, its `transfer_out` entry and the `pending` transfer (its message id
 *      fixed: the transfer id; its void deadline fixed). The recovery alarm is set in the same turn.
 *   2. the direct chat's id, created in D1 only if this pair has none yet;
 *   3. the recipient's `credit` (or, past the deadline, `voidUnlessCredited`): idempotent, and
 *      atomic against a void on the recipient's side, so a transfer is credited or voided, never both;
 *   4. the `credit_transfer` message in D1 (keyed by transfer id), only after the credit;
 *   5. one transactionSync: `posted` with its stored 201 — or, if the recipient recorded a void,
 *      the `reversal_in` entry, `voided` and its stored 409 `transfer_voided`.
 * Requests are committed in groups (`transfer`; docs/wallets.md "Group commit"): step 1 for every
 * waiting request in one transaction, steps 2–5 for the debited ones together.
 * No storage transaction spans an await, so A→B and B→A at once cannot deadlock. Steps 2–5 are
 * repeated by the alarm, by a retry with the same key and by a read of the transfer until it ends;
 * every step is idempotent, so repeating is always safe, and a credited transfer is never voided:
 * its message is retried until it is posted.
 */
export class WalletDO extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  /** The alarm time this object last set (null: none), so frequent transfers do not keep pushing it later. */
  private alarmAt: number | null = null;
  /** Transfer requests that arrived while a group was being committed, in arrival order: the next group. */
  protected readonly waiting: Waiting[] = [];
  /** Whether a group is being committed (then new requests wait in `waiting`). */
  private committing = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /** The clock of every protocol decision (a test subclass moves it past a void deadline). */
  protected now(): number {
    return Date.now();
  }

  /** Called after each protocol step, per transfer; a test subclass stops or crashes the protocol there. */
  protected reached(_point: FaultPoint): void {}

  /** Awaited before each group is taken from `waiting`; a test subclass holds groups here to fill one. */
  protected async beforeGroup(): Promise<void> {}

  // ------------------------------------------------------------------ RPC: owner's reads and opening

  /** Idempotent: the first call creates the wallet with the `signupCredits` grant; later calls change nothing. */
  open(userId: string, signupCredits: number): Outcome<Wallet> {
    const row = this.ctx.storage.transactionSync(() => this.ensureOpen(userId, signupCredits, this.now()));
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
    const used = this.windowUsed(this.now());
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
   * A transfer this wallet sent or received, with its status. A sent one still pending is pushed
   * forward first, so a client that timed out and asks here gets the most final answer there is
   * (still `pending` only while the recipient or D1 cannot be reached). `event` is set when this
   * read ended the transfer; the caller publishes it.
   */
  async getTransfer(
    userId: string,
    signupCredits: number,
    transferId: string,
  ): Promise<Outcome<{ transfer: TransferWithStatus; event: TransferEvent | null }>> {
    this.open(userId, signupCredits);
    const sent = this.transferOut(transferId);
    if (sent) {
      let event: TransferEvent | null = null;
      if (sent.state === "pending") {
        try {
          event = (await this.finish(sent)).event;
        } catch (error) {
          logRecoveryFailure(transferId, error);
        }
      }
      const current = this.transferOut(transferId);
      invariant(current, `transfer ${transferId} disappeared`);
      return { ok: true, value: { transfer: this.sentTransfer(current), event } };
    }
    const received = this.sql.exec<TransferInRow>("SELECT * FROM transfers_in WHERE transfer_id = ?", transferId).toArray()[0];
    if (received) {
      return {
        ok: true,
        value: {
          transfer: toTransfer("posted", {
            senderId: received.sender_id,
            recipientId: userId,
            amount: received.amount,
            senderBalance: received.sender_balance,
            recipientBalance: received.recipient_balance,
            transferId,
            messageId: received.message_id,
            chatId: received.chat_id,
            createdAt: received.created_at,
          }),
          event: null,
        },
      };
    }
    const voided = this.voidedIn(transferId);
    if (voided) {
      return {
        ok: true,
        value: {
          transfer: toTransfer("voided", {
            senderId: voided.sender_id,
            recipientId: userId,
            amount: voided.amount,
            senderBalance: voided.sender_balance,
            recipientBalance: null,
            transferId,
            messageId: null,
            chatId: null,
            createdAt: voided.created_at,
          }),
          event: null,
        },
      };
    }
    return refuse("transfer_not_found", `No transfer ${transferId} sent or received by you`);
  }

  // ------------------------------------------------------------------ RPC: the transfer protocol

  /**
   * Sender side of a transfer (the class comment has the steps), committed in groups (group
   * commit): a request that arrives while a group is being committed waits for the next group,
   * which takes every request waiting by then (up to MAX_GROUP), in arrival order. So a busy wallet
   * makes one storage transaction (one durable flush) for N debits, N credits in parallel, one D1
   * batch for the N messages and one transaction marking them posted, where a transfer at a time
   * makes N of each. Nothing else changes for a request: its key, its checks and its refusal are
   * its own, decided in arrival order against the balance and limits the requests before it left,
   * and an idle wallet commits a request at once (a group of one).
   */
  transfer(command: TransferCommand): Promise<TransferResult> {
    return new Promise((answer, fail) => {
      this.waiting.push({ command, answer, fail });
      if (!this.committing) void this.commitWaiting();
    });
  }

  /**
   * Recipient side: credits the transfer once. A repeat answers the first credit (balance after,
   * time) and changes nothing; a transfer this wallet already voided is refused forever
   * (`credited: false`). Atomic with `voidUnlessCredited`: this object runs one at a time.
   */
  credit(command: CreditCommand): CreditResult {
    return this.ctx.storage.transactionSync(() => {
      const known = this.creditOrVoid(command.transferId);
      if (known) return known;
      const now = this.now();
      this.ensureOpen(command.recipientId, command.signupCredits, now);
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
      return { credited: true, balanceAfter, creditedAt: now };
    });
  }

  /**
   * Recipient side, past the transfer's deadline: in one transaction, either answers that it was
   * already credited (the sender then posts it) or records the void, after which `credit` for this
   * id refuses forever. Never opens the wallet: a void moves nothing here.
   */
  voidUnlessCredited(command: CreditCommand): CreditResult {
    return this.ctx.storage.transactionSync(() => {
      const known = this.creditOrVoid(command.transferId);
      if (known) return known;
      const now = this.now();
      this.sql.exec(
        "INSERT INTO voided_in (transfer_id, sender_id, amount, note, sender_balance, created_at, voided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        command.transferId,
        command.senderId,
        command.amount,
        command.note,
        command.senderBalance,
        command.createdAt,
        now,
      );
      return { credited: false, voidedAt: now };
    });
  }

  /** Whether this wallet holds an outcome (ended or in flight) for the owner's transfer key. */
  knowsTransferKey(idempotencyKey: string): boolean {
    return (
      this.sql.exec("SELECT 1 FROM transfers_out WHERE idempotency_key = ?", idempotencyKey).toArray().length > 0 ||
      this.sql.exec("SELECT 1 FROM refusals WHERE idempotency_key = ?", idempotencyKey).toArray().length > 0
    );
  }

  /**
   * Admin grant: credits from nowhere, recorded as a `grant` entry; idempotent per (admin, key).
   * `wallet` is the wallet after the grant when this call applied it (the caller announces it).
   */
  grant(command: GrantCommand): Outcome<{ reply: StoredReply; wallet: Wallet | null }> {
    return this.ctx.storage.transactionSync(() => {
      const now = this.now();
      this.ensureOpen(command.userId, command.signupCredits, now);
      // Scope of a key: the admin who sent it (API.md §1), within this wallet.
      const scopedKey = command.idempotencyKey === null ? null : `${command.grantedBy}:${command.idempotencyKey}`;
      if (scopedKey !== null) {
        const known = this.sql.exec<GrantRow>("SELECT * FROM grants WHERE idempotency_key = ?", scopedKey).toArray()[0];
        if (known) {
          if (known.fingerprint !== command.fingerprint) return keyReused();
          invariant(known.response !== null, `grant ${known.grant_id} keeps its key without its reply`);
          return { ok: true, value: { reply: { status: 201, body: known.response, replayed: true }, wallet: null } };
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
      return { ok: true, value: { reply: { status: 201, body, replayed: false }, wallet: toWallet(this.wallet()) } };
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

  // ------------------------------------------------------------------ alarm: recovery and key expiry

  /**
   * Pushes the pending transfers whose turn has come (a page of them; at-least-once: any step may
   * have run already) to their end, announces the ones it ended, expires idempotency keys past
   * their retention in bounded batches, and sets the next alarm: the next transfer due or the next
   * key expiry, whichever is first.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = this.now();
    const due = this.sql.exec<TransferOutRow>(RECOVERY_SQL.due, now, RECOVERY_PAGE).toArray();
    const endings = await this.finishAll(due);
    for (const row of due) {
      const ending = endings.get(row.transfer_id);
      invariant(ending, `transfer ${row.transfer_id} left unsettled`);
      if (ending.status === "fulfilled") {
        const { event } = ending.value;
        if (event) publishTransferEvent(this.env, (promise) => this.ctx.waitUntil(promise), event);
      } else {
        logRecoveryFailure(row.transfer_id, ending.reason);
        this.backOff(row, now);
      }
    }
    this.expireKeys(now);
    this.scheduleNext(now);
  }

  // ------------------------------------------------------------------ internals: the protocol

  /** Commits groups until no request waits; runs once at a time (`committing`). */
  private async commitWaiting(): Promise<void> {
    this.committing = true;
    try {
      while (this.waiting.length > 0) {
        await this.beforeGroup();
        const group = this.waiting.splice(0, MAX_GROUP);
        try {
          await this.commitGroup(group);
        } catch (error) {
          // commitGroup settles every request itself; this is only a bug's way out, and must not strand them.
          for (const request of group) request.fail(error);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  /**
   * One group: step 1 for each request in ONE transaction, in arrival order; then steps 2–5 for
   * the debited transfers together (`finishAll`). Every request is answered or failed on its own.
   */
  private async commitGroup(group: readonly Waiting[]): Promise<void> {
    const now = this.now();
    let begun: Begun[];
    try {
      begun = this.ctx.storage.transactionSync(() => group.map(({ command }) => this.begin(command, now)));
    } catch (error) {
      for (const request of group) request.fail(error);
      return;
    }
    // Same turn as the commit above, so the debits and their recovery alarm are written together.
    const retryTimes = begun.flatMap((b) => (b.kind === "continue" && !b.replayed ? [b.row.retry_at] : []));
    if (retryTimes.length > 0) this.scheduleAlarm(Math.min(...retryTimes));

    const going: { request: Waiting; begun: Extract<Begun, { kind: "continue" }> }[] = [];
    group.forEach((request, i) => {
      const started = begun[i];
      invariant(started, "a request of the group has no beginning");
      if (started.kind === "answered") request.answer(started.result);
      else if (this.passes("after_debit", request)) going.push({ request, begun: started });
    });
    // A retry of a key still pending names the same transfer as its original: finished once.
    const rows = [...new Map(going.map(({ begun }) => [begun.row.transfer_id, begun.row])).values()];
    const endings = await this.finishAll(rows);
    const announced = new Set<string>();
    for (const { request, begun } of going) {
      const transferId = begun.row.transfer_id;
      const ending = endings.get(transferId);
      invariant(ending, `transfer ${transferId} left unsettled`);
      if (ending.status === "rejected") {
        request.fail(ending.reason);
        continue;
      }
      if (!this.passes("after_posted", request)) continue;
      const event = announced.has(transferId) ? null : ending.value.event;
      announced.add(transferId);
      request.answer({ ok: true, reply: { ...ending.value.reply, replayed: begun.replayed }, rateLimit: begun.rateLimit, event });
    }
  }

  /** `reached(point)` for one request of a group: false (and the request failed) when it stops there. */
  private passes(point: FaultPoint, request: Waiting): boolean {
    try {
      this.reached(point);
      return true;
    } catch (error) {
      request.fail(error);
      return false;
    }
  }

  /** Step 1, inside one transactionSync. */
  private begin(command: TransferCommand, now: number): Begun {
    this.ensureOpen(command.senderId, command.signupCredits, now);
    const answered = (result: TransferResult): Begun => ({ kind: "answered", result });
    const key = command.idempotencyKey;
    if (key !== null) {
      const known = this.sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE idempotency_key = ?", key).toArray()[0];
      if (known) {
        if (known.fingerprint !== command.fingerprint) return answered(keyReused());
        if (known.state === "pending") return { kind: "continue", row: known, replayed: true, rateLimit: null };
        return answered({ ok: true, reply: endedReply(known, true), rateLimit: null, event: null });
      }
      const refused = this.sql.exec<RefusalRow>("SELECT * FROM refusals WHERE idempotency_key = ?", key).toArray()[0];
      if (refused) {
        if (refused.fingerprint !== command.fingerprint) return answered(keyReused());
        return answered({
          ok: true,
          reply: { status: 409, body: refused.response, replayed: true },
          rateLimit: null,
          event: null,
        });
      }
    }
    // A new request from here on: the checks, in the order a client sees them.
    if (command.refusal && isValidationFailure(command.refusal)) return answered(preCheckRefused(command.refusal));
    const rateLimit = this.countTransferRequest(command.ratePerMinute, now);
    if (!rateLimit.allowed) {
      return answered({
        ok: false,
        code: "rate_limited",
        details: [rateLimitedDetail(rateLimit)],
        headers: rateLimitHeaders(rateLimit),
      });
    }
    if (command.refusal) return answered(preCheckRefused(command.refusal));
    const balance = this.wallet().balance;
    if (balance < command.amount) {
      return answered(
        this.refuseStored(command, now, rateLimit, "insufficient_balance", [
          `Insufficient balance: ${balance} available, ${command.amount} requested`,
        ]),
      );
    }
    const used = this.windowUsed(now);
    if (used + command.amount > command.dailyLimit) {
      return answered(
        this.refuseStored(command, now, rateLimit, "transfer_limit_exceeded", [
          `Transfer limit exceeded: ${used} of ${command.dailyLimit} credits sent in the last ${TRANSFER_WINDOW_HOURS} hours, ${command.amount} requested`,
        ]),
      );
    }
    const transferId = newId(now);
    const senderBalance = balance - command.amount;
    invariant(senderBalance >= 0, `debit of ${command.amount} from ${balance}`);
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", senderBalance, now);
    this.insertEntry(transferId, "transfer_out", -command.amount, senderBalance, command.recipientId, null, command.note, now);
    this.countSent(command.amount, now);
    this.sql.exec(
      `INSERT INTO transfers_out (transfer_id, idempotency_key, fingerprint, state, recipient_id, amount, note, sender_balance,
         message_id, chat_id, created_at, void_at, retry_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      transferId,
      key,
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
    invariant(row, `transfer ${transferId} not written`);
    return { kind: "continue", row, replayed: false, rateLimit };
  }

  /** A business refusal that was executed: stored under the key (if any) and replayed later. */
  private refuseStored(
    command: TransferCommand,
    now: number,
    rateLimit: RateLimitDecision,
    code: "insufficient_balance" | "transfer_limit_exceeded",
    details: string[],
  ): TransferResult {
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
    return { ok: true, reply: { status: 409, body, replayed: false }, rateLimit, event: null };
  }

  /** Steps 2–5 for one debited transfer (`finishAll`); throws what stopped it. */
  private async finish(row: TransferOutRow): Promise<Ending> {
    const ending = (await this.finishAll([row])).get(row.transfer_id);
    invariant(ending, `transfer ${row.transfer_id} left unsettled`);
    if (ending.status === "rejected") throw ending.reason;
    return ending.value;
  }

  /**
   * Steps 2–5 for debited transfers, together: their credits (or voids) in parallel, the messages
   * of the credited ones in ONE D1 batch (in the order of `rows`, so one chat's messages follow
   * the debits), then ONE transaction marking them posted. Safe to repeat and to run concurrently
   * with itself. Each transfer settles on its own: a recipient that cannot be reached fails only
   * its transfer, a failed D1 batch the transfers whose messages it carried; they stay pending
   * for the next retry.
   */
  private async finishAll(rows: readonly TransferOutRow[]): Promise<Map<string, PromiseSettledResult<Ending>>> {
    const settled = new Map<string, PromiseSettledResult<Ending>>();
    const end = (transferId: string, value: Ending) => settled.set(transferId, { status: "fulfilled", value });
    const fail = (transferId: string, reason: unknown) => settled.set(transferId, { status: "rejected", reason });
    if (rows.length === 0) return settled;
    const senderId = this.wallet().user_id;
    const signupCredits = getConfig(this.env).signupCredits;

    const credits = await Promise.all(
      rows.map(async (row) => {
        try {
          if (row.state !== "pending") {
            end(row.transfer_id, { reply: endedReply(row, false), event: null });
            return null;
          }
          const chatId = row.chat_id ?? (await this.resolveChat(row, senderId));
          const command = creditCommandOf(row, senderId, chatId, signupCredits);
          const recipient = walletStub(this.env, row.recipient_id);
          const outcome =
            this.now() >= row.void_at ? await recipient.voidUnlessCredited(command) : await recipient.credit(command);
          if (!outcome.credited) {
            end(row.transfer_id, this.endVoided(row.transfer_id));
            return null;
          }
          this.reached("after_credit");
          return { row, chatId, credit: outcome };
        } catch (error) {
          fail(row.transfer_id, error);
          return null;
        }
      }),
    );
    const credited = credits.filter((credit) => credit !== null);
    if (credited.length === 0) return settled;

    let messages: (Message | undefined)[];
    try {
      messages = await postCreditTransferMessages(
        createDb(this.env.DB),
        credited.map(({ row, chatId }) => ({
          transferId: row.transfer_id,
          messageId: row.message_id,
          chatId,
          senderId,
          recipientId: row.recipient_id,
          amount: row.amount,
          note: row.note,
          createdAt: row.created_at,
        })),
      );
    } catch (error) {
      for (const { row } of credited) fail(row.transfer_id, error);
      return settled;
    }
    const posting = credited.flatMap((credited, i) => {
      const message = messages[i];
      const transferId = credited.row.transfer_id;
      if (!message) {
        fail(
          transferId,
          new Error(`credit_transfer message of ${transferId} neither inserted nor found in chat ${credited.chatId}`),
        );
        return [];
      }
      try {
        this.reached("after_message");
      } catch (error) {
        fail(transferId, error);
        return [];
      }
      return [{ ...credited, message }];
    });
    try {
      const endings = this.ctx.storage.transactionSync(() =>
        posting.map(({ row, credit, message }) => this.endPosted(row.transfer_id, credit, message)),
      );
      posting.forEach(({ row }, i) => end(row.transfer_id, endings[i] as Ending));
    } catch (error) {
      for (const { row } of posting) fail(row.transfer_id, error);
    }
    return settled;
  }

  /** Step 2 for the first transfer between two people: their direct chat, created in D1 if missing. */
  private async resolveChat(row: TransferOutRow, senderId: string): Promise<string> {
    const { chat } = await findOrCreateDirectChat(createDb(this.env.DB), senderId, row.recipient_id, row.created_at);
    this.sql.exec("UPDATE transfers_out SET chat_id = ? WHERE transfer_id = ? AND chat_id IS NULL", chat.id, row.transfer_id);
    return chat.id;
  }

  /** Step 5, credited: posted with its 201. Exactly one finisher commits it and gets the event. Inside transactionSync. */
  private endPosted(transferId: string, credit: CreditResult & { credited: true }, message: Message): Ending {
    const current = this.transferOut(transferId);
    invariant(current, `transfer ${transferId} disappeared`);
    invariant(current.state !== "voided", `transfer ${transferId} credited by its recipient but voided here`);
    if (current.state === "posted") return { reply: endedReply(current, false), event: null };
    invariant(message.id === current.message_id, `transfer ${transferId} posted as message ${message.id}`);
    const now = this.now();
    const posted: TransferOutRow = {
      ...current,
      state: "posted",
      recipient_balance: credit.balanceAfter,
      chat_id: message.chatId,
      posted_at: now,
    };
    const transfer = this.sentTransfer(posted);
    const body = JSON.stringify(successBody(transfer, 201));
    this.sql.exec(
      "UPDATE transfers_out SET state = 'posted', recipient_balance = ?, chat_id = ?, response = ?, posted_at = ? WHERE transfer_id = ?",
      credit.balanceAfter,
      message.chatId,
      body,
      now,
      transferId,
    );
    this.sql.exec("UPDATE entries SET message_id = ? WHERE transfer_id = ? AND kind = 'transfer_out'", message.id, transferId);
    return {
      reply: { status: 201, body, replayed: false },
      event: {
        kind: "posted",
        transfer: { ...transfer, recipientBalance: credit.balanceAfter, messageId: message.id, chatId: message.chatId },
        message,
        debitedAt: iso(current.created_at),
        creditedAt: iso(credit.creditedAt),
      },
    };
  }

  /**
   * Step 5, voided by the recipient: the amount comes back as a `reversal_in` entry, the transfer
   * is `voided` with its stored 409 `transfer_voided` (what a replay of its key answers), and it
   * no longer counts against the rolling send limit. Exactly one finisher commits it.
   */
  private endVoided(transferId: string): Ending {
    return this.ctx.storage.transactionSync(() => {
      const current = this.transferOut(transferId);
      invariant(current, `transfer ${transferId} disappeared`);
      invariant(current.state !== "posted", `transfer ${transferId} voided by its recipient but posted here`);
      if (current.state === "voided") return { reply: endedReply(current, false), event: null };
      const now = this.now();
      const balance = this.wallet().balance + current.amount;
      this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", balance, now);
      this.insertEntry(transferId, "reversal_in", current.amount, balance, current.recipient_id, null, VOID_NOTE, now);
      this.uncountSent(current.amount, current.created_at);
      const body = JSON.stringify(
        errorBody(409, "transfer_voided", [
          `Transfer ${transferId} was voided: its credit could not be delivered in time, so ${current.amount} credits went back to your balance and nothing reached the recipient. Send again with a new Idempotency-Key.`,
        ]),
      );
      this.sql.exec(
        "UPDATE transfers_out SET state = 'voided', voided_at = ?, response = ? WHERE transfer_id = ?",
        now,
        body,
        transferId,
      );
      const voided = this.transferOut(transferId);
      invariant(voided, `transfer ${transferId} disappeared`);
      return {
        reply: { status: 409, body, replayed: false },
        event: { kind: "voided", transfer: this.sentTransfer(voided), senderWallet: toWallet(this.wallet()) },
      };
    });
  }

  /** The recipient's earlier answer for a transfer, if it gave one. Inside transactionSync. */
  private creditOrVoid(transferId: string): CreditResult | null {
    const credited = this.sql
      .exec<{ balance_after: number; created_at: number }>(
        "SELECT balance_after, created_at FROM entries WHERE transfer_id = ? AND kind = 'transfer_in'",
        transferId,
      )
      .toArray()[0];
    const voided = this.voidedIn(transferId);
    invariant(!(credited && voided), `transfer ${transferId} both credited and voided`);
    if (credited) return { credited: true, balanceAfter: credited.balance_after, creditedAt: credited.created_at };
    if (voided) return { credited: false, voidedAt: voided.voided_at };
    return null;
  }

  /** The owner's transfer requests per minute, counted after the key lookup. Inside transactionSync. */
  private countTransferRequest(limit: number, now: number): RateLimitDecision {
    const stored = this.ctx.storage.kv.get<Bucket[]>(RATE_BUCKETS_KEY) ?? [];
    const { decision, buckets } = hitWindow(stored, limit, now);
    if (decision.allowed) this.ctx.storage.kv.put(RATE_BUCKETS_KEY, buckets);
    return decision;
  }

  // ------------------------------------------------------------------ internals: recovery scheduling

  /** After a failed recovery attempt: try again later, doubling, but never past the void deadline by much. */
  private backOff(row: TransferOutRow, now: number): void {
    const delay = Math.min(IN_FLIGHT_MS * 2 ** Math.min(row.attempts, 10), MAX_RETRY_DELAY_MS);
    const retryAt = Math.min(now + delay, Math.max(row.void_at, now + IN_FLIGHT_MS));
    this.sql.exec(
      "UPDATE transfers_out SET attempts = attempts + 1, retry_at = ? WHERE transfer_id = ? AND state = 'pending'",
      retryAt,
      row.transfer_id,
    );
  }

  private expireKeys(now: number): void {
    const cutoff = now - IDEMPOTENCY_RETENTION_MS;
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(RECOVERY_SQL.expireTransferKeys, cutoff, EXPIRY_BATCH);
      this.sql.exec(RECOVERY_SQL.expireRefusals, cutoff, EXPIRY_BATCH);
      this.sql.exec(RECOVERY_SQL.expireGrantKeys, cutoff, EXPIRY_BATCH);
    });
  }

  /** The next alarm: the next pending transfer's turn, or the next key expiry; none when neither. */
  private scheduleNext(now: number): void {
    const first = (query: string) => this.sql.exec<{ t: number | null }>(query).one().t;
    const keyTimes = [RECOVERY_SQL.oldestTransferKey, RECOVERY_SQL.oldestRefusal, RECOVERY_SQL.oldestGrantKey]
      .map(first)
      .filter((t): t is number => t !== null)
      .map((t) => t + IDEMPOTENCY_RETENTION_MS + 1);
    const nextDue = first(RECOVERY_SQL.nextDue);
    const candidates = nextDue === null ? keyTimes : [nextDue, ...keyTimes];
    if (candidates.length > 0) this.scheduleAlarm(Math.max(Math.min(...candidates), now));
  }

  private scheduleAlarm(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  // ------------------------------------------------------------------ internals: the ledger

  private walletRow(): WalletRow | undefined {
    return this.sql.exec<WalletRow>("SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1").toArray()[0];
  }

  /** The wallet of an opened object (every protocol path opens it first). */
  private wallet(): WalletRow {
    const row = this.walletRow();
    invariant(row, "wallet used before it was opened");
    invariant(row.balance >= 0, `balance ${row.balance} below zero`);
    return row;
  }

  private transferOut(transferId: string): TransferOutRow | undefined {
    return this.sql.exec<TransferOutRow>("SELECT * FROM transfers_out WHERE transfer_id = ?", transferId).toArray()[0];
  }

  private voidedIn(transferId: string): VoidedInRow | undefined {
    return this.sql.exec<VoidedInRow>("SELECT * FROM voided_in WHERE transfer_id = ?", transferId).toArray()[0];
  }

  /** A transfer this wallet sent, as its sender sees it. */
  private sentTransfer(row: TransferOutRow): TransferWithStatus {
    const posted = row.state === "posted";
    return toTransfer(row.state, {
      senderId: this.wallet().user_id,
      recipientId: row.recipient_id,
      amount: row.amount,
      senderBalance: row.sender_balance,
      recipientBalance: posted ? row.recipient_balance : null,
      transferId: row.transfer_id,
      messageId: posted ? row.message_id : null,
      chatId: posted ? row.chat_id : null,
      createdAt: row.created_at,
    });
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

  /** A voided transfer no longer counts against the window (its minute may have left it already). */
  private uncountSent(amount: number, debitedAt: number): void {
    this.sql.exec("UPDATE sent_by_minute SET amount = max(0, amount - ?) WHERE minute = ?", amount, minuteOf(debitedAt));
  }

  /** Must run inside transactionSync. */
  private ensureOpen(userId: string, signupCredits: number, now: number): WalletRow {
    const existing = this.walletRow();
    if (existing) {
      invariant(existing.user_id === userId, `wallet of ${existing.user_id} addressed as ${userId}`);
      return existing;
    }
    this.sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, 0, ?, ?)", userId, now, now);
    // Exactly once because the wallet row is created in this same transaction. Its id is a plain
    // 24-hex id like every other (API.md IDs); the welcome grant is the `grant` entry with no
    // `grants` row (admin grants have one), the first entry of the ledger, noted "Welcome credits".
    if (signupCredits > 0) this.applyCredit(newId(now), "grant", signupCredits, null, null, WELCOME_GRANT_NOTE, now);
    return this.wallet();
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
    invariant(amount > 0, `credit of ${amount}`);
    const balance = this.wallet().balance + amount;
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", balance, now);
    this.insertEntry(transferId, kind, amount, balance, counterpartyId, messageId, note, now);
    return balance;
  }

  /** The one place ledger entries are written: each (transfer, kind) once, its balanceAfter the wallet's. */
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
    invariant(balanceAfter >= 0, `entry ${kind} of ${transferId} would leave ${balanceAfter}`);
    const duplicate = this.sql.exec("SELECT 1 FROM entries WHERE transfer_id = ? AND kind = ?", transferId, kind).toArray();
    invariant(duplicate.length === 0, `a second ${kind} entry for ${transferId}`);
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
}

const iso = (ms: number) => new Date(ms).toISOString();

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

const keyReused = (): Refusal =>
  refuse("idempotency_key_reused", "This Idempotency-Key was already used with a different request body");

const isValidationFailure = (refusal: PreCheckRefusal) => refusal.code === "validation_failed";

const preCheckRefused = (refusal: PreCheckRefusal): Refusal => ({ ok: false, code: refusal.code, details: refusal.details });

/** What the sender's wallet hands the recipient's to credit (or void) the transfer of `row`. */
export function creditCommandOf(row: TransferOutRow, senderId: string, chatId: string, signupCredits: number): CreditCommand {
  return {
    transferId: row.transfer_id,
    senderId,
    recipientId: row.recipient_id,
    amount: row.amount,
    note: row.note,
    senderBalance: row.sender_balance,
    messageId: row.message_id,
    chatId,
    createdAt: row.created_at,
    signupCredits,
  };
}

/** The stored reply of a transfer that ended (posted: its 201; voided: its 409). */
function endedReply(row: TransferOutRow, replayed: boolean): StoredReply {
  invariant(row.state !== "pending" && row.response !== null, `transfer ${row.transfer_id} has no stored reply`);
  return { status: row.state === "posted" ? 201 : 409, body: row.response, replayed };
}

/** The one shape of a transfer, from whichever side's rows. */
function toTransfer(
  status: TransferWithStatus["status"],
  fields: {
    senderId: string;
    recipientId: string;
    amount: number;
    senderBalance: number;
    recipientBalance: number | null;
    transferId: string;
    messageId: string | null;
    chatId: string | null;
    createdAt: number;
  },
): TransferWithStatus {
  return {
    senderId: fields.senderId,
    recipientId: fields.recipientId,
    transferredAmount: fields.amount,
    senderBalance: fields.senderBalance,
    recipientBalance: fields.recipientBalance,
    transferId: fields.transferId,
    messageId: fields.messageId,
    chatId: fields.chatId,
    createdAt: iso(fields.createdAt),
    status,
  };
}

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

function logRecoveryFailure(transferId: string, error: unknown): void {
  console.error(
    JSON.stringify({
      level: "error",
      event: "transfer_recovery_failed",
      transferId,
      message: error instanceof Error ? error.message : String(error),
    }),
  );
}
