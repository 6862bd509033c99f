import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { BOOKS_SQL, walletBooks } from "../../src/durable-objects/wallet/wallet-books";
import { newId } from "../../src/lib/ids";
import { walletStub } from "../../src/services/wallets";
import { seedWalletUser } from "../support/wallets";
import { craftPending, recordingSql, sent } from "./support";

/**
 * A reconciliation run reads every wallet's books, so `walletBooks` must not read a wallet's
 * history: each query it runs is planned as an index (or primary key) lookup of `entries` and
 * `transfers_out`, never a SCAN. The queries are the ones it really runs (recorded), with the
 * bindings it gave them, and each must be one of BOOKS_SQL (a new query has to be named there).
 */
describe("walletBooks: every query is an index lookup", () => {
  it("runs only the queries of BOOKS_SQL, and none scans entries or transfers_out", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await sent(alice, bob, 5);
    // A pending transfer past its deadline, so the stuck list has a row to read.
    await craftPending(alice.id, bob.id, { amount: 3, createdAt: Date.now() - 7_200_000, voidAt: Date.now() - 3_600_000 });
    const cut = Date.now();
    const plans = await runInDurableObject(walletStub(env, alice.id), (_instance, state) => {
      const { sql, runs } = recordingSql(state.storage.sql);
      walletBooks(sql, alice.id, { cutoffAt: cut, stuckBefore: cut, inFlightHorizonMs: 4_200_000, settledBefore: newId(cut) });
      return runs.map(({ query, bindings }) => ({
        query,
        plan: state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...bindings)
          .toArray()
          .map((row) => row.detail),
      }));
    });
    expect(new Set(plans.map((p) => p.query))).toEqual(new Set(Object.values(BOOKS_SQL)));
    for (const { query, plan } of plans) {
      for (const detail of plan.filter((d) => /\b(entries|transfers_out)\b/.test(d))) {
        // "SEARCH entries" alone is the MAX(rowid) lookup; "SEARCH … USING [COVERING] INDEX …" an index range.
        expect(detail, `${query}\n${plan.join(" | ")}`).toMatch(/^SEARCH (entries|transfers_out)\b/);
      }
    }
    const history = plans.filter((p) => /\b(entries|transfers_out)\b/.test(p.query));
    expect(history.length).toBeGreaterThanOrEqual(5);
    for (const { plan } of history) expect(plan.some((d) => /^SEARCH (entries|transfers_out)\b/.test(d))).toBe(true);
  });
});
