import type { WalletRow } from "./wallet-schema";
import {
  balanceOf,
  readTotals,
  readTransferStates,
  subtractTotals,
  TOTALS_SQL,
  totalsSince,
  type WalletTotals,
} from "./wallet-totals";

/**
 * What a WalletDO tells the reconciliation (src/services/reconciliation/), as functions over its
 * SqlStorage: the RPC methods only delegate here. Every read is bounded: the summary is O(1) (the
 * running totals) plus index lookups of the entries written since the run's cut, the debits in the
 * in-flight horizon and the pending transfers; the transfer lists are pages.
 */

/** Stuck transfers listed per wallet in a summary (the count is exact; the list is for the report). */
export const STUCK_LISTED = 20;

export type StuckTransfer = { transferId: string; recipientId: string; amount: number; createdAt: number; voidAt: number };

export type WalletBooks = {
  userId: string;
  opened: boolean;
  /** Problems inside this wallet alone: its balance vs its running totals and its last entry. */
  problems: string[];
  balance: number;
  totals: WalletTotals;
  /** The books as of the run's cut (`cutoffAt`): totals minus what was written since. */
  atCut: { balance: number; totals: WalletTotals };
  pending: { count: number; amount: number };
  voided: { count: number; amount: number };
  /** Credits debited before the cut that may not have arrived or returned by it (see `inFlightBound`). */
  inFlightBound: number;
  /** `pending` transfers whose own void deadline is before `stuckBefore`: count and the few with the oldest deadlines. */
  stuckCount: number;
  stuck: StuckTransfer[];
  /**
   * The transfers with an id below the run's `settledBefore` (debited before its cut): those this
   * wallet sent that are posted, and the credits it received. What the run compares with the
   * transfer messages below the same bound, so nothing debited during the run moves either side.
   */
  settled: { posted: Aggregate; credits: Aggregate };
};

export type Aggregate = { count: number; amount: number };

export type OutgoingRow = {
  transferId: string;
  recipientId: string;
  amount: number;
  state: string;
  messageId: string | null;
  /** A `reversal_in` entry of the transfer's amount gave it back (what a voided transfer must have). */
  refunded: boolean;
  createdAt: number;
};

export type IncomingRow = { transferId: string; senderId: string | null; amount: number; messageId: string | null };

/** Both sides of one transfer as this wallet sees them (the sender's and the recipient's objects are asked separately). */
export type TransferSides = {
  out: {
    recipientId: string;
    amount: number;
    state: string;
    messageId: string | null;
    createdAt: number;
    /** Its void deadline, fixed at the debit: a pending transfer past it is stuck. */
    voidAt: number;
  } | null;
  credit: { senderId: string | null; amount: number; messageId: string | null } | null;
  refund: { amount: number } | null;
};

/**
 * When a run reads the books. `stuckBefore` is the run's reference time (its cut): a pending
 * transfer is stuck when its own `void_at` is before it. Each transfer's deadline was fixed by
 * TRANSFER_VOID_AFTER_SECONDS at its debit, so changing the var later cannot make a run call a
 * transfer stuck or not. `inFlightHorizonMs`: how far before the cut a debit may still be in flight.
 */
export type BooksHorizon = {
  cutoffAt: number;
  stuckBefore: number;
  inFlightHorizonMs: number;
  /** A transfer id: `settled` counts the transfers whose id sorts below it (ids start with their second). */
  settledBefore: string;
};

/**
 * Every query `walletBooks` runs (with the totals' own, TOTALS_SQL), named so that
 * test/reconciliation/books-query-plan.test.ts can show each is an index lookup, never a scan of the
 * wallet's history (entries, transfers_out).
 */
export const BOOKS_SQL = {
  wallet: "SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1",
  totals: TOTALS_SQL.read,
  transferStates: TOTALS_SQL.transferStates,
  totalsSince: TOTALS_SQL.since,
  // `ORDER BY seq DESC LIMIT 1` is planned as a SCAN (stopped after one row); MAX of the rowid is a lookup.
  lastEntry: "SELECT balance_after FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)",
  // By minute (at most DEBITS_KEPT_MINUTES rows, whatever the traffic), rounded outwards: the
  // minute of the horizon's start and the minute of the cut count whole, so the bound can only grow.
  recentDebits: "SELECT COALESCE(SUM(amount), 0) AS amount FROM debited_by_minute WHERE minute >= ? AND minute <= ?",
  oldPending: "SELECT COALESCE(SUM(amount), 0) AS amount FROM transfers_out WHERE state = 'pending' AND created_at < ?",
  stuckCount: "SELECT COUNT(*) AS count FROM transfers_out WHERE state = 'pending' AND void_at < ?",
  stuck: `SELECT transfer_id, recipient_id, amount, created_at, void_at FROM transfers_out
    WHERE state = 'pending' AND void_at < ? ORDER BY void_at LIMIT ?`,
  // Through the primary key and the entries' (transfer_id, kind) index: only transfers since the bound.
  postedSince:
    "SELECT COUNT(*) AS count, COALESCE(SUM(amount), 0) AS amount FROM transfers_out WHERE transfer_id >= ? AND state = 'posted'",
  creditsSince:
    "SELECT COUNT(*) AS count, COALESCE(SUM(amount), 0) AS amount FROM entries WHERE transfer_id >= ? AND kind = 'transfer_in'",
} as const;

export function walletBooks(sql: SqlStorage, userId: string, horizon: BooksHorizon): WalletBooks {
  const { cutoffAt, stuckBefore, inFlightHorizonMs } = horizon;
  const wallet = sql.exec<WalletRow>(BOOKS_SQL.wallet).toArray()[0];
  const totals = readTotals(sql);
  const problems: string[] = [];
  if (wallet && wallet.user_id !== userId) problems.push(`wallet belongs to ${wallet.user_id}`);
  const balance = wallet?.balance ?? 0;
  const books = balanceOf(totals);
  if (books !== balance) problems.push(`balance ${balance} but the running totals say ${books}`);
  const last = sql.exec<{ balance_after: number }>(BOOKS_SQL.lastEntry).toArray()[0];
  if ((last?.balance_after ?? 0) !== balance)
    problems.push(`balance ${balance} but the last entry says ${last?.balance_after ?? 0}`);
  const cutTotals = subtractTotals(totals, totalsSince(sql, cutoffAt));
  const horizonStart = cutoffAt - inFlightHorizonMs;
  // A correct transfer is credited or voided within the void deadline, so what was in flight at the
  // cut was debited in the horizon before it, or is still pending (older, stuck).
  const minute = (ms: number) => Math.floor(ms / 60_000);
  const recentDebits = sql.exec<{ amount: number }>(BOOKS_SQL.recentDebits, minute(horizonStart), minute(cutoffAt)).one().amount;
  const oldPending = sql.exec<{ amount: number }>(BOOKS_SQL.oldPending, horizonStart).one().amount;
  const stuck = sql
    .exec<{ transfer_id: string; recipient_id: string; amount: number; created_at: number; void_at: number }>(
      BOOKS_SQL.stuck,
      stuckBefore,
      STUCK_LISTED,
    )
    .toArray()
    .map((row) => ({
      transferId: row.transfer_id,
      recipientId: row.recipient_id,
      amount: row.amount,
      createdAt: row.created_at,
      voidAt: row.void_at,
    }));
  const stuckCount = sql.exec<{ count: number }>(BOOKS_SQL.stuckCount, stuckBefore).one().count;
  const { pending, voided } = readTransferStates(sql);
  const settled = settledAggregates(sql, totals, { pending, voided }, horizon.settledBefore);
  return {
    userId,
    opened: wallet !== undefined,
    problems,
    balance,
    totals,
    atCut: { balance: balanceOf(cutTotals), totals: cutTotals },
    pending,
    voided,
    inFlightBound: recentDebits + oldPending,
    stuckCount,
    stuck,
    settled,
  };
}

/** Posted transfers and credits below `before`: all of them (running totals) minus those since it (index ranges). */
function settledAggregates(
  sql: SqlStorage,
  totals: WalletTotals,
  states: { pending: Aggregate; voided: Aggregate },
  before: string,
): WalletBooks["settled"] {
  const since = (query: string) => sql.exec<Aggregate>(query, before).one();
  const minus = (a: Aggregate, ...bs: Aggregate[]) =>
    bs.reduce((acc, b) => ({ count: acc.count - b.count, amount: acc.amount - b.amount }), a);
  return {
    posted: minus(totals.transfer_out, states.pending, states.voided, since(BOOKS_SQL.postedSince)),
    credits: minus(totals.transfer_in, since(BOOKS_SQL.creditsSince)),
  };
}

/** Transfers this wallet sent, in transfer id order after `afterId`. */
export function outgoingPage(sql: SqlStorage, afterId: string, limit: number): OutgoingRow[] {
  return outgoingRows(sql, "t.transfer_id > ? ORDER BY t.transfer_id LIMIT ?", afterId, limit);
}

/** Transfers this wallet sent, of these ids (those it has), in transfer id order. */
export function outgoingByIds(sql: SqlStorage, transferIds: readonly string[]): OutgoingRow[] {
  if (transferIds.length === 0) return [];
  return outgoingRows(sql, `t.transfer_id IN (${placeholders(transferIds)}) ORDER BY t.transfer_id`, ...transferIds);
}

function outgoingRows(sql: SqlStorage, where: string, ...bindings: (string | number)[]): OutgoingRow[] {
  return sql
    .exec<{
      transfer_id: string;
      recipient_id: string;
      amount: number;
      state: string;
      message_id: string | null;
      refunded: number;
      created_at: number;
    }>(
      // The message id is fixed at the debit; only a posted transfer has its message.
      `SELECT t.transfer_id, t.recipient_id, t.amount, t.state, CASE t.state WHEN 'posted' THEN t.message_id END AS message_id,
         EXISTS (SELECT 1 FROM entries e WHERE e.transfer_id = t.transfer_id AND e.kind = 'reversal_in' AND e.amount = t.amount) AS refunded,
         t.created_at
       FROM transfers_out t WHERE ${where}`,
      ...bindings,
    )
    .toArray()
    .map((row) => ({
      transferId: row.transfer_id,
      recipientId: row.recipient_id,
      amount: row.amount,
      state: row.state,
      messageId: row.message_id,
      refunded: row.refunded === 1,
      createdAt: row.created_at,
    }));
}

/** Credits this wallet received (its `transfer_in` entries), in transfer id order after `afterId`. */
export function incomingPage(sql: SqlStorage, afterId: string, limit: number): IncomingRow[] {
  return incomingRows(sql, "transfer_id > ? ORDER BY transfer_id LIMIT ?", afterId, limit);
}

/** Credits this wallet received, of these transfer ids (those it has), in transfer id order. */
export function incomingByIds(sql: SqlStorage, transferIds: readonly string[]): IncomingRow[] {
  if (transferIds.length === 0) return [];
  return incomingRows(sql, `transfer_id IN (${placeholders(transferIds)}) ORDER BY transfer_id`, ...transferIds);
}

function incomingRows(sql: SqlStorage, where: string, ...bindings: (string | number)[]): IncomingRow[] {
  return sql
    .exec<{ transfer_id: string; counterparty_id: string | null; amount: number; message_id: string | null }>(
      `SELECT transfer_id, counterparty_id, amount, message_id FROM entries WHERE kind = 'transfer_in' AND ${where}`,
      ...bindings,
    )
    .toArray()
    .map((row) => ({
      transferId: row.transfer_id,
      senderId: row.counterparty_id,
      amount: row.amount,
      messageId: row.message_id,
    }));
}

const placeholders = (items: readonly unknown[]) => items.map(() => "?").join(",");

export function transferSides(sql: SqlStorage, transferId: string): TransferSides {
  const out = sql
    .exec<{
      recipient_id: string;
      amount: number;
      state: string;
      message_id: string | null;
      created_at: number;
      void_at: number;
    }>(
      "SELECT recipient_id, amount, state, CASE state WHEN 'posted' THEN message_id END AS message_id, created_at, void_at FROM transfers_out WHERE transfer_id = ?",
      transferId,
    )
    .toArray()[0];
  const entry = (kind: string) =>
    sql
      .exec<{ counterparty_id: string | null; amount: number; message_id: string | null }>(
        "SELECT counterparty_id, amount, message_id FROM entries WHERE transfer_id = ? AND kind = ?",
        transferId,
        kind,
      )
      .toArray()[0];
  const credit = entry("transfer_in");
  const refund = entry("reversal_in");
  return {
    out: out
      ? {
          recipientId: out.recipient_id,
          amount: out.amount,
          state: out.state,
          messageId: out.message_id,
          createdAt: out.created_at,
          voidAt: out.void_at,
        }
      : null,
    credit: credit ? { senderId: credit.counterparty_id, amount: credit.amount, messageId: credit.message_id } : null,
    refund: refund ? { amount: refund.amount } : null,
  };
}
