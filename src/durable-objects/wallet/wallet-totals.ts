import type { EntryRow } from "./wallet-schema";

/**
 * A wallet's running totals per ledger entry kind, kept in the same storage transaction as every
 * entry (`recordEntry` is called from the one place entries are inserted), so a wallet can answer
 * reconciliation in O(1) instead of scanning its ledger, and so every write checks the books:
 *
 *   balance = granted + received + reversedIn − sent − reversedOut
 *
 * Amounts are magnitudes (the ledger's `amount` is signed). The totals are keyed by entry KIND,
 * never by the operation that wrote the entry, so a new path that writes entries (a void's
 * `reversal_in`) is counted without touching this module.
 */

type Kind = EntryRow["kind"];

/** Column prefix of each kind in `wallet_totals`, and the sign its entries must carry. */
const KINDS: Record<Kind, { column: string; sign: 1 | -1 }> = {
  grant: { column: "granted", sign: 1 },
  transfer_in: { column: "received", sign: 1 },
  reversal_in: { column: "reversed_in", sign: 1 },
  transfer_out: { column: "sent", sign: -1 },
  reversal_out: { column: "reversed_out", sign: -1 },
};

/**
 * The wallet schema migration that creates the totals, backfilled from the entries already
 * written (a wallet from before this migration gets exact totals on its first start). It creates
 * only its own table, so it does not depend on any other migration after v2.
 */
export const WALLET_TOTALS_MIGRATION = `
  CREATE TABLE wallet_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    granted INTEGER NOT NULL DEFAULT 0, granted_count INTEGER NOT NULL DEFAULT 0,
    received INTEGER NOT NULL DEFAULT 0, received_count INTEGER NOT NULL DEFAULT 0,
    reversed_in INTEGER NOT NULL DEFAULT 0, reversed_in_count INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0, sent_count INTEGER NOT NULL DEFAULT 0,
    reversed_out INTEGER NOT NULL DEFAULT 0, reversed_out_count INTEGER NOT NULL DEFAULT 0
  );
  INSERT INTO wallet_totals (id, ${Object.values(KINDS)
    .map(({ column }) => `${column}, ${column}_count`)
    .join(", ")})
    SELECT 1, ${Object.keys(KINDS)
      .map(
        (kind) =>
          `COALESCE(SUM(CASE WHEN kind = '${kind}' THEN ABS(amount) END), 0), COUNT(CASE WHEN kind = '${kind}' THEN 1 END)`,
      )
      .join(", ")}
    FROM entries;
`;

export type KindTotal = { amount: number; count: number };

/** Magnitudes and entry counts per kind. */
export type WalletTotals = Record<Kind, KindTotal>;

type TotalsRow = Record<string, number>;

const UPDATES = Object.fromEntries(
  Object.entries(KINDS).map(([kind, { column }]) => [
    kind,
    `INSERT INTO wallet_totals (id, ${column}, ${column}_count) VALUES (1, ?, 1)
     ON CONFLICT (id) DO UPDATE SET ${column} = ${column} + excluded.${column}, ${column}_count = ${column}_count + 1
     RETURNING *`,
  ]),
) as Record<Kind, string>;

function toTotals(row: TotalsRow | undefined): WalletTotals {
  const totals = {} as WalletTotals;
  for (const [kind, { column }] of Object.entries(KINDS) as [Kind, (typeof KINDS)[Kind]][]) {
    totals[kind] = { amount: row?.[column] ?? 0, count: row?.[`${column}_count`] ?? 0 };
  }
  return totals;
}

/** granted + received + reversedIn − sent − reversedOut. */
export function balanceOf(totals: WalletTotals): number {
  let balance = 0;
  for (const [kind, { sign }] of Object.entries(KINDS) as [Kind, (typeof KINDS)[Kind]][]) {
    balance += sign * totals[kind].amount;
  }
  return balance;
}

/** The wallet refuses a write that would break its books: the transaction rolls back. */
export class WalletBooksError extends Error {
  override readonly name = "WalletBooksError";
}

/**
 * Counts one ledger entry and checks the books against its `balanceAfter`. Must run inside the
 * transaction that inserts the entry: a throw here rolls the entry (and the balance change) back.
 */
export function recordEntry(sql: SqlStorage, kind: Kind, amount: number, balanceAfter: number): void {
  const rule = KINDS[kind];
  if (!rule || amount === 0 || Math.sign(amount) !== rule.sign) {
    throw new WalletBooksError(`a ${kind} entry of ${amount} has the wrong sign`);
  }
  const totals = toTotals(sql.exec<TotalsRow>(UPDATES[kind], Math.abs(amount)).one());
  const expected = balanceOf(totals);
  if (expected !== balanceAfter) {
    throw new WalletBooksError(`the books say ${expected} after this ${kind} entry, the entry says ${balanceAfter}`);
  }
}

/** The reads of the totals, named so test/reconciliation/books-query-plan.test.ts can show each is an index lookup. */
export const TOTALS_SQL = {
  read: "SELECT * FROM wallet_totals WHERE id = 1",
  since: `SELECT kind, COALESCE(SUM(ABS(amount)), 0) AS amount, COUNT(*) AS count FROM entries
    WHERE kind IN ('grant', 'transfer_in', 'reversal_in', 'transfer_out', 'reversal_out') AND created_at >= ?
    GROUP BY kind`,
  transferStates: "SELECT pending_count, pending_amount, voided_count, voided_amount FROM wallet_totals WHERE id = 1",
} as const;

export function readTotals(sql: SqlStorage): WalletTotals {
  return toTotals(sql.exec<TotalsRow>(TOTALS_SQL.read).toArray()[0]);
}

/**
 * What entries written at or after `since` add to the totals (the index on (kind, created_at)
 * reads only those): subtracting it gives the totals as of `since`, a cut that is consistent
 * across wallets however long the walk over them takes.
 */
export function totalsSince(sql: SqlStorage, since: number): WalletTotals {
  const rows = sql.exec<{ kind: Kind; amount: number; count: number }>(TOTALS_SQL.since, since).toArray();
  const totals = toTotals(undefined);
  for (const row of rows) totals[row.kind] = { amount: row.amount, count: row.count };
  return totals;
}

export function subtractTotals(a: WalletTotals, b: WalletTotals): WalletTotals {
  const out = {} as WalletTotals;
  for (const kind of Object.keys(KINDS) as Kind[]) {
    out[kind] = { amount: a[kind].amount - b[kind].amount, count: a[kind].count - b[kind].count };
  }
  return out;
}

/**
 * Transfers this wallet sent that are pending or voided, counted and summed as their state
 * changes (`recordTransferState`), so a wallet's books are O(1) however long its history. Part of
 * wallet schema v5, backfilled from the transfers already written.
 */
export const TRANSFER_STATE_TOTALS_MIGRATION = `
  ALTER TABLE wallet_totals ADD COLUMN pending_count INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE wallet_totals ADD COLUMN pending_amount INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE wallet_totals ADD COLUMN voided_count INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE wallet_totals ADD COLUMN voided_amount INTEGER NOT NULL DEFAULT 0;
  INSERT OR IGNORE INTO wallet_totals (id) VALUES (1);
  UPDATE wallet_totals SET
    pending_count = (SELECT COUNT(*) FROM transfers_out WHERE state = 'pending'),
    pending_amount = (SELECT COALESCE(SUM(amount), 0) FROM transfers_out WHERE state = 'pending'),
    voided_count = (SELECT COUNT(*) FROM transfers_out WHERE state = 'voided'),
    voided_amount = (SELECT COALESCE(SUM(amount), 0) FROM transfers_out WHERE state = 'voided')
  WHERE id = 1;
`;

export type TransferStateTotals = { pending: KindTotal; voided: KindTotal };

/** A sent transfer's state moves: `new` → pending at its debit; pending → posted or voided at its end. */
export type TransferStateMove = { from: "new"; to: "pending" } | { from: "pending"; to: "posted" | "voided" };

/**
 * Counts a sent transfer's move between states. Must run inside the transaction that moves it; the
 * counts can never go below zero (a move from a state the totals do not hold rolls back).
 */
export function recordTransferState(sql: SqlStorage, move: TransferStateMove, amount: number): void {
  if (!(amount > 0)) throw new WalletBooksError(`a transfer of ${amount}`);
  const pendingDelta = move.to === "pending" ? 1 : -1;
  const voided = move.to === "voided" ? 1 : 0;
  const row = sql
    .exec<{ pending_count: number; pending_amount: number }>(
      `INSERT INTO wallet_totals (id, pending_count, pending_amount, voided_count, voided_amount) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET pending_count = pending_count + excluded.pending_count,
         pending_amount = pending_amount + excluded.pending_amount,
         voided_count = voided_count + excluded.voided_count, voided_amount = voided_amount + excluded.voided_amount
       RETURNING pending_count, pending_amount`,
      pendingDelta,
      pendingDelta * amount,
      voided,
      voided * amount,
    )
    .one();
  if (row.pending_count < 0 || row.pending_amount < 0) {
    throw new WalletBooksError(`a transfer left ${move.from} that the totals do not count as ${move.from}`);
  }
}

export function readTransferStates(sql: SqlStorage): TransferStateTotals {
  const row = sql
    .exec<{ pending_count: number; pending_amount: number; voided_count: number; voided_amount: number }>(
      TOTALS_SQL.transferStates,
    )
    .toArray()[0];
  return {
    pending: { count: row?.pending_count ?? 0, amount: row?.pending_amount ?? 0 },
    voided: { count: row?.voided_count ?? 0, amount: row?.voided_amount ?? 0 },
  };
}
