import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type BooksHorizon, walletBooks } from "../../src/durable-objects/wallet/wallet-books";
import { DEBITED_BY_MINUTE_BACKFILL, migrate } from "../../src/durable-objects/wallet/wallet-schema";
import { TRANSFER_STATE_TOTALS_MIGRATION, WALLET_TOTALS_MIGRATION } from "../../src/durable-objects/wallet/wallet-totals";
import { newId } from "../../src/lib/ids";
import { walletStub } from "../../src/services/wallets";
import { recordingSql } from "./support";

/** One entry a minute: the in-flight horizon (70 minutes) holds the same few entries in every wallet below. */
const SPACING = 60_000;
const T0 = Date.UTC(2025, 0, 1);
const HOUR = 3_600_000;
const FAR_AHEAD = Date.UTC(2200, 0, 1);

/**
 * A wallet with `n` entries (n even), written straight into its storage in one transaction:
 * entry i is a grant of 3 (i odd) or a transfer of 1 out (i even, transfer `t<i>`). Transfers 2, 4
 * and 6 are pending past their deadline (stuck), 8 pending under a deadline far ahead, 10 and 12
 * voided (refunded by two reversal_in entries at the end); every other one posted. The running
 * totals are then backfilled from the rows by the schema's own migrations.
 */
function seedHistory(sql: SqlStorage, userId: string, n: number, spacing = SPACING) {
  const at = (i: number) => T0 + i * spacing;
  sql.exec(
    `WITH RECURSIVE i(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM i WHERE v < ?)
     INSERT INTO entries (id, transfer_id, kind, amount, balance_after, created_at)
     SELECT printf('e%08d', v), printf('t%08d', v), CASE v % 2 WHEN 1 THEN 'grant' ELSE 'transfer_out' END,
       CASE v % 2 WHEN 1 THEN 3 ELSE -1 END, 3 * ((v + 1) / 2) - v / 2, ? + v * ? FROM i`,
    n,
    T0,
    spacing,
  );
  sql.exec(
    `INSERT INTO transfers_out (transfer_id, state, recipient_id, amount, sender_balance, recipient_balance, message_id,
       chat_id, response, created_at, void_at, retry_at, posted_at, voided_at)
     SELECT transfer_id, s, 'someone', 1, balance_after, CASE s WHEN 'posted' THEN 0 END, transfer_id,
       CASE s WHEN 'posted' THEN 'chat' END, CASE s WHEN 'pending' THEN NULL ELSE '{}' END,
       created_at, CASE seq WHEN 8 THEN ${FAR_AHEAD} ELSE created_at + ${HOUR} END, created_at + ${HOUR},
       CASE s WHEN 'posted' THEN created_at END, CASE s WHEN 'voided' THEN created_at + ${HOUR} END
     FROM (SELECT *, CASE WHEN seq <= 8 THEN 'pending' WHEN seq <= 12 THEN 'voided' ELSE 'posted' END AS s
           FROM entries WHERE kind = 'transfer_out')`,
  );
  for (const [k, transfer] of ["t00000010", "t00000012"].entries()) {
    sql.exec(
      "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, created_at) VALUES (?, ?, 'reversal_in', 1, ?, ?)",
      `r${k}`,
      transfer,
      n + 1 + k,
      at(n) + k + 1,
    );
  }
  sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, ?, ?, ?)", userId, n + 2, T0, at(n));
  sql.exec(DEBITED_BY_MINUTE_BACKFILL);
  sql.exec("DROP TABLE wallet_totals");
  sql.exec(WALLET_TOTALS_MIGRATION);
  sql.exec(TRANSFER_STATE_TOTALS_MIGRATION);
}

/** The books of a wallet with `n` seeded entries `spacing` ms apart, cut after entry n − 10, and the rows its queries read. */
async function booksOf(n: number, spacing = SPACING) {
  const at = (i: number) => T0 + i * spacing;
  const userId = newId();
  // Settled: the transfers before entry n − 10 (the last 6 transfers, all posted, are at or after it).
  const horizon: BooksHorizon = {
    cutoffAt: at(n - 10) + 1,
    stuckBefore: at(n - 10) + 1,
    inFlightHorizonMs: 70 * SPACING,
    settledBefore: `t${String(n - 10).padStart(8, "0")}`,
  };
  return runInDurableObject(walletStub(env, userId), (_instance, state) => {
    // A wallet object creates its tables on its first call that needs them (wallet-do.ts `ready`); this one is seeded directly.
    migrate(state.storage);
    state.storage.transactionSync(() => seedHistory(state.storage.sql, userId, n, spacing));
    const { sql, runs } = recordingSql(state.storage.sql);
    const books = walletBooks(sql, userId, horizon);
    return { books, rowsRead: runs.reduce((sum, run) => sum + run.cursor.rowsRead, 0) };
  });
}

describe("walletBooks at 100,000 entries", () => {
  it("answers from the running totals and index lookups: right figures, the same rows read as at 1,000 entries", async () => {
    const n = 100_000;
    const { books, rowsRead } = await booksOf(n);
    expect(books).toMatchObject({
      opened: true,
      problems: [],
      balance: n + 2,
      atCut: { balance: n - 10 },
      pending: { count: 4, amount: 4 },
      voided: { count: 2, amount: 2 },
      stuckCount: 3,
      // The debits of the horizon before the cut, counted by whole minutes (the 35 inside it and the
      // one in its first minute before it), and the 4 pending debited before it.
      inFlightBound: 36 + 4,
    });
    expect(books.totals).toMatchObject({
      grant: { count: n / 2, amount: (3 * n) / 2 },
      transfer_out: { count: n / 2, amount: n / 2 },
      reversal_in: { count: 2, amount: 2 },
    });
    expect(books.atCut.totals.grant).toEqual({ count: n / 2 - 5, amount: (3 * n) / 2 - 15 });
    expect(books.stuck.map((s) => s.transferId)).toEqual(["t00000002", "t00000004", "t00000006"]);
    // Posted: every transfer but 4 pending and 2 voided; settled: those 6 after the bound too.
    expect(books.settled).toEqual({ posted: { count: n / 2 - 12, amount: n / 2 - 12 }, credits: { count: 0, amount: 0 } });

    const small = await booksOf(1_000);
    expect(small.books).toMatchObject({ balance: 1_002, stuckCount: 3, inFlightBound: 40, pending: { count: 4 } });
    // What books() reads depends on the cut, the horizon and the pending transfers, never on the
    // length of the history: the same rows at 1,000 and at 100,000 entries, and few of them.
    expect(rowsRead).toBe(small.rowsRead);
    expect(rowsRead).toBeLessThan(200);
  });

  it("reads the same rows whatever the traffic in the void window: 2,100 debits in the horizon or 8,400", async () => {
    // One entry a second, or four: the 70-minute horizon holds 2,100 debits, or 8,400.
    const busy = await booksOf(10_000, 1_000);
    const busier = await booksOf(40_000, 250);
    expect(busy.books.inFlightBound).toBeGreaterThanOrEqual(2_100 + 4);
    expect(busier.books.inFlightBound).toBeGreaterThanOrEqual(8_400 + 4);
    expect(busier.books.problems).toEqual([]);
    // A row per minute of the horizon at most, never a row per debit in it.
    expect(busier.rowsRead).toBe(busy.rowsRead);
    expect(busier.rowsRead).toBeLessThan(200);
  });
});
