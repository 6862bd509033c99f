import type { WalletRow } from "./wallet-schema";
import { balanceOf, readTotals, subtractTotals, totalsSince, type WalletTotals } from "./wallet-totals";

/**
 * What a WalletDO tells the reconciliation (src/services/reconciliation/), as functions over its
 * SqlStorage: the RPC methods only delegate here. Every read is bounded: the summary is O(1) plus
 * the wallet's pending transfers and its entries since the run's cut; the transfer lists are pages.
 */

/** Stuck transfers listed per wallet in a summary (the count is exact; the list is for the report). */
export const STUCK_LISTED = 20;

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
  /** `pending` transfers created before `stuckBefore` (the void deadline passed): count and the oldest few. */
  stuckCount: number;
  stuck: { transferId: string; recipientId: string; amount: number; createdAt: number }[];
};

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
  out: { recipientId: string; amount: number; state: string; messageId: string | null; createdAt: number } | null;
  credit: { senderId: string | null; amount: number; messageId: string | null } | null;
  refund: { amount: number } | null;
};

type Horizon = { cutoffAt: number; stuckBefore: number; inFlightHorizonMs: number };

export function walletBooks(sql: SqlStorage, userId: string, { cutoffAt, stuckBefore, inFlightHorizonMs }: Horizon): WalletBooks {
  const wallet = sql.exec<WalletRow>("SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1").toArray()[0];
  const totals = readTotals(sql);
  const problems: string[] = [];
  if (wallet && wallet.user_id !== userId) problems.push(`wallet belongs to ${wallet.user_id}`);
  const balance = wallet?.balance ?? 0;
  const books = balanceOf(totals);
  if (books !== balance) problems.push(`balance ${balance} but the running totals say ${books}`);
  const last = sql.exec<{ balance_after: number }>("SELECT balance_after FROM entries ORDER BY seq DESC LIMIT 1").toArray()[0];
  if ((last?.balance_after ?? 0) !== balance)
    problems.push(`balance ${balance} but the last entry says ${last?.balance_after ?? 0}`);
  const cutTotals = subtractTotals(totals, totalsSince(sql, cutoffAt));
  const byState = (state: string) =>
    sql
      .exec<{ count: number; amount: number }>(
        "SELECT COUNT(*) AS count, COALESCE(SUM(amount), 0) AS amount FROM transfers_out WHERE state = ?",
        state,
      )
      .one();
  const pending = byState("pending");
  const horizonStart = cutoffAt - inFlightHorizonMs;
  // A correct transfer is credited or voided within the void deadline, so what was in flight at the
  // cut was debited in the horizon before it, or is still pending (older, stuck).
  const recentDebits = sql
    .exec<{ amount: number }>(
      "SELECT COALESCE(-SUM(amount), 0) AS amount FROM entries WHERE kind = 'transfer_out' AND created_at >= ? AND created_at < ?",
      horizonStart,
      cutoffAt,
    )
    .one().amount;
  const oldPending = sql
    .exec<{ amount: number }>(
      "SELECT COALESCE(SUM(amount), 0) AS amount FROM transfers_out WHERE state = 'pending' AND created_at < ?",
      horizonStart,
    )
    .one().amount;
  const stuckCount = sql
    .exec<{ count: number }>(
      "SELECT COUNT(*) AS count FROM transfers_out WHERE state = 'pending' AND created_at < ?",
      stuckBefore,
    )
    .one().count;
  const stuck = sql
    .exec<{ transfer_id: string; recipient_id: string; amount: number; created_at: number }>(
      "SELECT transfer_id, recipient_id, amount, created_at FROM transfers_out WHERE state = 'pending' AND created_at < ? ORDER BY created_at LIMIT ?",
      stuckBefore,
      STUCK_LISTED,
    )
    .toArray()
    .map((row) => ({
      transferId: row.transfer_id,
      recipientId: row.recipient_id,
      amount: row.amount,
      createdAt: row.created_at,
    }));
  return {
    userId,
    opened: wallet !== undefined,
    problems,
    balance,
    totals,
    atCut: { balance: balanceOf(cutTotals), totals: cutTotals },
    pending,
    voided: byState("voided"),
    inFlightBound: recentDebits + oldPending,
    stuckCount,
    stuck,
  };
}

/** Transfers this wallet sent, in transfer id order after `afterId`. */
export function outgoingPage(sql: SqlStorage, afterId: string, limit: number): OutgoingRow[] {
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
       FROM transfers_out t WHERE t.transfer_id > ? ORDER BY t.transfer_id LIMIT ?`,
      afterId,
      limit,
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
  return sql
    .exec<{ transfer_id: string; counterparty_id: string | null; amount: number; message_id: string | null }>(
      "SELECT transfer_id, counterparty_id, amount, message_id FROM entries WHERE kind = 'transfer_in' AND transfer_id > ? ORDER BY transfer_id LIMIT ?",
      afterId,
      limit,
    )
    .toArray()
    .map((row) => ({
      transferId: row.transfer_id,
      senderId: row.counterparty_id,
      amount: row.amount,
      messageId: row.message_id,
    }));
}

export function transferSides(sql: SqlStorage, transferId: string): TransferSides {
  const out = sql
    .exec<{ recipient_id: string; amount: number; state: string; message_id: string | null; created_at: number }>(
      "SELECT recipient_id, amount, state, CASE state WHEN 'posted' THEN message_id END AS message_id, created_at FROM transfers_out WHERE transfer_id = ?",
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
        }
      : null,
    credit: credit ? { senderId: credit.counterparty_id, amount: credit.amount, messageId: credit.message_id } : null,
    refund: refund ? { amount: refund.amount } : null,
  };
}
