import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { migrate } from "../../src/durable-objects/wallet/wallet-schema";
import {
  balanceOf,
  readTotals,
  recordEntry,
  subtractTotals,
  totalsSince,
  type WalletTotals,
} from "../../src/durable-objects/wallet/wallet-totals";
import { newId } from "../../src/lib/ids";

/**
 * Properties of a wallet's running totals (src/durable-objects/wallet/wallet-totals.ts) on a real
 * SqlStorage: each run opens a fresh wallet object (its own migrations give it the `entries` and
 * `wallet_totals` tables) and writes a random sequence of ledger entries into it as the wallet
 * does (the entry and `recordEntry` in one storage transaction), checked against a model that
 * just adds magnitudes per kind. Entries that are refused (wrong sign, zero, or a `balanceAfter`
 * the books disagree with) must throw WalletBooksError and leave no trace.
 */

type Kind = keyof WalletTotals;
const KINDS: Kind[] = ["grant", "transfer_in", "reversal_in", "transfer_out", "reversal_out"];
const SIGN: Record<Kind, 1 | -1> = { grant: 1, transfer_in: 1, reversal_in: 1, transfer_out: -1, reversal_out: -1 };

type Op =
  /** A valid entry of `magnitude` (an outflow is clamped to the balance: `balance_after` is never negative). */
  | { type: "entry"; kind: Kind; magnitude: number; gapMs: number }
  /**
   * `amount` with the wrong sign for `kind`, or zero; with `booksAgree`, a `balanceAfter` as if the
   * sign were right (so only the sign check can refuse it), else as the wrong sign would move it.
   */
  | { type: "wrongSign"; kind: Kind; magnitude: number; booksAgree: boolean }
  /** A right-signed entry whose `balanceAfter` is off by `delta` (≠ 0). */
  | { type: "mismatch"; kind: Kind; magnitude: number; delta: number };

const kind = fc.constantFrom(...KINDS);
const magnitude = fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 1_000_000_000 }));
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ type: fc.constant("entry" as const), kind, magnitude, gapMs: fc.integer({ min: 0, max: 3 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("wrongSign" as const),
      kind,
      magnitude: fc.integer({ min: 0, max: 1000 }),
      booksAgree: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("mismatch" as const),
      kind,
      magnitude,
      delta: fc.oneof(fc.integer({ min: -5, max: -1 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: -1e9, max: 1e9 })),
    }),
  },
);

const zero = (): WalletTotals => Object.fromEntries(KINDS.map((k) => [k, { amount: 0, count: 0 }])) as unknown as WalletTotals;

/**
 * A fresh wallet object (never seen by any other test), to run `fn` inside with its storage; its
 * tables made first (an object creates them on the first call that needs them: wallet-do.ts `ready`).
 */
const inFreshWallet = <T>(fn: (storage: DurableObjectStorage) => T) =>
  runInDurableObject(env.WALLET.get(env.WALLET.newUniqueId()), (_instance, state) => {
    migrate(state.storage);
    return fn(state.storage);
  });

describe("a wallet's running totals (properties)", () => {
  it("follow any sequence of entries: balance = balanceOf(totals), refused entries leave them unchanged, and any cut subtracts", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.nat(), async (ops, cutPick) => {
        await inFreshWallet((storage) => {
          const sql = storage.sql;
          const model = zero();
          let balance = 0;
          let at = 1_767_225_600_000;
          /** [created_at, totals after that entry], to check the cut at any entry's time. */
          const history: [number, WalletTotals][] = [];
          const write = (k: Kind, amount: number, balanceAfter: number, createdAt: number) =>
            storage.transactionSync(() => {
              sql.exec(
                "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                newId(createdAt),
                newId(createdAt),
                k,
                amount,
                Math.max(0, balanceAfter),
                createdAt,
              );
              recordEntry(sql, k, amount, balanceAfter);
            });
          const refused = (attempt: () => void) => {
            const before = readTotals(sql);
            const entries = sql.exec("SELECT COUNT(*) AS n FROM entries").one().n;
            let thrown: unknown;
            try {
              attempt();
            } catch (error) {
              thrown = error;
            }
            expect((thrown as Error | undefined)?.name).toBe("WalletBooksError");
            expect(readTotals(sql)).toEqual(before);
            expect(sql.exec("SELECT COUNT(*) AS n FROM entries").one().n).toBe(entries);
          };

          for (const o of ops) {
            const sign = SIGN[o.kind];
            if (o.type === "entry") {
              const size = sign < 0 ? Math.min(o.magnitude, balance) : o.magnitude;
              at += o.gapMs;
              if (size === 0) {
                // An outflow from an empty wallet cannot be written; a zero entry is refused.
                refused(() => write(o.kind, 0, balance, at));
                continue;
              }
              balance += sign * size;
              write(o.kind, sign * size, balance, at);
              model[o.kind] = { amount: model[o.kind].amount + size, count: model[o.kind].count + 1 };
              history.push([at, structuredClone(model)]);
            } else if (o.type === "wrongSign") {
              const amount = -sign * o.magnitude;
              refused(() => write(o.kind, amount, o.booksAgree ? balance + sign * o.magnitude : balance + amount, at));
            } else {
              const size = sign < 0 ? Math.min(o.magnitude, balance) : o.magnitude;
              if (size === 0) continue;
              refused(() => write(o.kind, sign * size, balance + sign * size + o.delta, at));
            }
            const totals = readTotals(sql);
            expect(totals).toEqual(model);
            expect(balanceOf(totals)).toBe(balance);
          }

          // The totals as of a cut: everything written before it. Cuts fall on an entry's own
          // time (entries at the cut count as after it) and between or around all of them.
          const times = [...new Set(history.map(([t]) => t))];
          const cuts = [...times, (times[0] ?? at) - 1, at + 1];
          const cut = cuts[cutPick % cuts.length] as number;
          const asOfCut = subtractTotals(readTotals(sql), totalsSince(sql, cut));
          const before = history.filter(([t]) => t < cut).at(-1)?.[1] ?? zero();
          expect(asOfCut).toEqual(before);
          const balanceAtCut =
            sql
              .exec<{ b: number }>("SELECT balance_after AS b FROM entries WHERE created_at < ? ORDER BY seq DESC LIMIT 1", cut)
              .toArray()[0]?.b ?? 0;
          expect(balanceOf(asOfCut)).toBe(balanceAtCut);
        });
      }),
      { numRuns: 60 },
    );
  });

  it("balanceOf is additive: the balance of a difference is the difference of the balances", () => {
    const totals = fc.record(
      Object.fromEntries(
        KINDS.map((k) => [k, fc.record({ amount: fc.integer({ min: 0, max: 1e12 }), count: fc.nat(1e6) })]),
      ) as Record<Kind, fc.Arbitrary<{ amount: number; count: number }>>,
    ) as fc.Arbitrary<WalletTotals>;
    fc.assert(
      fc.property(totals, totals, (a, b) => {
        const diff = subtractTotals(a, b);
        expect(balanceOf(diff)).toBe(balanceOf(a) - balanceOf(b));
        expect(subtractTotals(diff, zero())).toEqual(diff);
        for (const k of KINDS) expect(diff[k]).toEqual({ amount: a[k].amount - b[k].amount, count: a[k].count - b[k].count });
      }),
    );
  });
});
