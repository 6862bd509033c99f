import { invariant } from "../../lib/errors";
import { newId } from "../../lib/ids";
import type { EntryRow, WalletRow } from "./wallet-schema";
import { recordEntry, recordTransferState, type TransferStateMove } from "./wallet-totals";
import { DEBITS_KEPT_MINUTES, WINDOW_MINUTES } from "./wallet-types";

/** The note of the welcome grant's ledger entry. */
export const WELCOME_GRANT_NOTE = "Welcome credits";

/** The note of the `reversal_in` entry that gives a voided transfer's amount back. */
export const VOID_NOTE = "Transfer voided: its credit could not be delivered";

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

/**
 * The only writer of a wallet's balance, its entries, its running totals and its rolling send
 * window. Every method that writes must run inside the caller's `transactionSync`: a throw rolls
 * the whole change back. Each write asserts what it keeps true: the balance never below zero, an
 * entry's `balanceAfter` equal to the balance, the running totals equal to the balance
 * (`recordEntry`), each (transfer, kind) once (the schema's UNIQUE).
 */
export class Ledger {
  constructor(private readonly sql: SqlStorage) {}

  row(): WalletRow | undefined {
    return this.sql.exec<WalletRow>("SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1").toArray()[0];
  }

  /** The wallet of an opened object (every protocol path opens it first). */
  wallet(): WalletRow {
    const row = this.row();
    invariant(row, "wallet used before it was opened");
    invariant(row.balance >= 0, `balance ${row.balance} below zero`);
    return row;
  }

  /**
   * Creates the wallet with the welcome grant exactly once (the wallet row is created in the same
   * transaction); later calls only check that the object is the user's.
   */
  open(userId: string, signupCredits: number, now: number): WalletRow {
    const existing = this.row();
    if (existing) {
      invariant(existing.user_id === userId, `wallet of ${existing.user_id} addressed as ${userId}`);
      return existing;
    }
    this.sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, 0, ?, ?)", userId, now, now);
    // The welcome grant is the `grant` entry with no `grants` row (admin grants have one).
    if (signupCredits > 0)
      this.credit(newId(now), "grant", signupCredits, { counterpartyId: null, note: WELCOME_GRANT_NOTE }, now);
    return this.wallet();
  }

  /** Adds `amount` (> 0) as a grant or a received transfer; returns the balance after. */
  credit(
    transferId: string,
    kind: "grant" | "transfer_in",
    amount: number,
    entry: { counterpartyId: string | null; note: string | null; messageId?: string },
    now: number,
  ): number {
    invariant(amount > 0, `credit of ${amount}`);
    return this.move(transferId, kind, amount, entry, now);
  }

  /** The debit of a new transfer: its `transfer_out` entry, counted as sent and as pending. */
  debit(transferId: string, amount: number, recipientId: string, note: string | null, now: number): number {
    invariant(amount > 0, `debit of ${amount}`);
    const balance = this.move(transferId, "transfer_out", -amount, { counterpartyId: recipientId, note }, now);
    this.countSent(amount, now);
    recordTransferState(this.sql, { from: "new", to: "pending" }, amount);
    return balance;
  }

  /**
   * A voided transfer's amount back, as a `reversal_in` entry; it no longer counts against the
   * rolling send limit (its minute may have left the window already).
   */
  reverse(transferId: string, amount: number, recipientId: string, debitedAt: number, now: number): number {
    const balance = this.move(transferId, "reversal_in", amount, { counterpartyId: recipientId, note: VOID_NOTE }, now);
    this.sql.exec("UPDATE sent_by_minute SET amount = max(0, amount - ?) WHERE minute = ?", amount, minuteOf(debitedAt));
    this.transferEnded("voided", amount);
    return balance;
  }

  /** A pending transfer ended: the totals count it as posted or voided from now on. */
  transferEnded(state: Extract<TransferStateMove, { from: "pending" }>["to"], amount: number): void {
    recordTransferState(this.sql, { from: "pending", to: state }, amount);
  }

  /** A posted transfer's `transfer_out` entry names its message. */
  linkMessage(transferId: string, messageId: string): void {
    this.sql.exec("UPDATE entries SET message_id = ? WHERE transfer_id = ? AND kind = 'transfer_out'", messageId, transferId);
  }

  /** Credits sent in the rolling window (WINDOW_MINUTES whole minutes). */
  windowUsed(now: number): number {
    return this.sql
      .exec<{ used: number }>(
        "SELECT COALESCE(SUM(amount), 0) AS used FROM sent_by_minute WHERE minute >= ?",
        minuteOf(now) - WINDOW_MINUTES,
      )
      .one().used;
  }

  /** Newest first; `beforeSeq` continues a page. Returns `limit + 1` rows when there are more. */
  page(limit: number, beforeSeq: number | null): EntryRow[] {
    return this.sql
      .exec<EntryRow>(
        "SELECT * FROM entries WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        beforeSeq ?? Number.MAX_SAFE_INTEGER,
        limit + 1,
      )
      .toArray();
  }

  /** The one place the balance changes and entries are written. */
  private move(
    transferId: string,
    kind: EntryRow["kind"],
    amount: number,
    entry: { counterpartyId: string | null; note: string | null; messageId?: string },
    now: number,
  ): number {
    const balance = this.wallet().balance + amount;
    invariant(balance >= 0, `entry ${kind} of ${transferId} would leave ${balance}`);
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", balance, now);
    this.sql.exec(
      "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, message_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      newId(now),
      transferId,
      kind,
      amount,
      balance,
      entry.counterpartyId,
      entry.messageId ?? null,
      entry.note,
      now,
    );
    recordEntry(this.sql, kind, amount, balance);
    return balance;
  }

  /**
   * Counts a debit in its minute, twice: in the rolling send window (a void gives it back) and in
   * the debits per minute the books sum (never given back: what left the wallet then); each
   * forgets the minutes it no longer needs.
   */
  private countSent(amount: number, now: number): void {
    const minute = minuteOf(now);
    for (const [table, kept] of [
      ["sent_by_minute", WINDOW_MINUTES],
      ["debited_by_minute", DEBITS_KEPT_MINUTES],
    ] as const) {
      this.sql.exec(
        `INSERT INTO ${table} (minute, amount) VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET amount = amount + excluded.amount`,
        minute,
        amount,
      );
      this.sql.exec(`DELETE FROM ${table} WHERE minute < ?`, minute - kept);
    }
  }
}
