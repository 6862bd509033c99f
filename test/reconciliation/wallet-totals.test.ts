import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/durable-objects/wallet/wallet-schema";
import {
  readTotals,
  recordEntry,
  WALLET_TOTALS_MIGRATION,
  WalletBooksError,
} from "../../src/durable-objects/wallet/wallet-totals";
import type { WalletDO } from "../../src/index";
import { newId } from "../../src/lib/ids";
import { walletStub } from "../../src/services/wallets";
import { call } from "../support/http";
import { seedUser } from "../support/users";
import { rowsOf, seedWalletUser, transfer } from "../support/wallets";
import { craftEntry } from "./support";

const totalsOf = (userId: string) => runInDurableObject(walletStub(env, userId), (_i, state) => readTotals(state.storage.sql));

describe("a wallet's running totals", () => {
  it("are kept by entry kind in the same transaction as every entry", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 30 })).status).toBe(201);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 })).status).toBe(201);
    const grant = await call("POST", `/api/v1/admin/wallets/${bob.id}/grants`, {
      token: admin.token,
      body: { amount: 7, reason: "r" },
    });
    expect(grant.status).toBe(201);
    const none = { amount: 0, count: 0 };
    expect(await totalsOf(alice.id)).toEqual({
      grant: { amount: 100, count: 1 },
      transfer_in: none,
      reversal_in: none,
      transfer_out: { amount: 35, count: 2 },
      reversal_out: none,
    });
    expect(await totalsOf(bob.id)).toMatchObject({ grant: { amount: 107, count: 2 }, transfer_in: { amount: 35, count: 2 } });
    // A reversal_in (the void path's refund) is counted by its kind like any other entry.
    await runInDurableObject(walletStub(env, alice.id), (_i, state) =>
      state.storage.transactionSync(() => {
        state.storage.sql.exec("UPDATE wallet SET balance = 70");
        state.storage.sql.exec(
          "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, created_at) VALUES (?, ?, 'reversal_in', 5, 70, ?)",
          newId(),
          newId(),
          Date.now(),
        );
        recordEntry(state.storage.sql, "reversal_in", 5, 70);
      }),
    );
    expect((await totalsOf(alice.id)).reversal_in).toEqual({ amount: 5, count: 1 });
  });

  it("refuse a write that would break the books: the whole transaction rolls back", async () => {
    const alice = await seedWalletUser();
    await rowsOf(alice.id, "UPDATE wallet_totals SET granted = granted + 1");
    const res = await transfer(alice.token, { recipientId: (await seedWalletUser()).id, amount: 10 });
    expect(res.status).toBe(500);
    expect(await rowsOf(alice.id, "SELECT balance FROM wallet")).toEqual([{ balance: 100 }]);
    expect(await rowsOf(alice.id, "SELECT COUNT(*) AS n FROM entries")).toEqual([{ n: 1 }]);
    await expect(
      runInDurableObject(walletStub(env, alice.id), (_i, state) => recordEntry(state.storage.sql, "transfer_out", 5, 95)),
    ).rejects.toThrow(/wrong sign/);
    expect(() => {
      throw new WalletBooksError("x");
    }).toThrow(WalletBooksError);
  });

  it("are backfilled from the ledger when the migration runs on an existing wallet", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 12 })).status).toBe(201);
    await craftEntry(bob.id, { transferId: newId(), kind: "transfer_in", amount: 3, counterpartyId: alice.id });
    const before = await totalsOf(bob.id);
    await runInDurableObject(walletStub(env, bob.id), (_i, state) => {
      state.storage.sql.exec("DROP TABLE wallet_totals");
      state.storage.sql.exec(WALLET_TOTALS_MIGRATION);
    });
    expect(await totalsOf(bob.id)).toEqual(before);
    expect(before).toMatchObject({ grant: { amount: 100, count: 1 }, transfer_in: { amount: 15, count: 2 } });
    expect(MIGRATIONS[3]).toBe(WALLET_TOTALS_MIGRATION);
  });

  it("answer the reconciliation from a wallet written through the API: the books, the cut, pending and stuck transfers (their bounded reads: books-scale.test.ts)", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 20 })).status).toBe(201);
    const cut = Date.now() + 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    const later = await transfer(alice.token, { recipientId: bob.id, amount: 9 });
    expect(later.status).toBe(201);
    // The settled bound at the later transfer's id: the transfers below it are the first one only.
    const horizon = { cutoffAt: cut, stuckBefore: cut, inFlightHorizonMs: 4_200_000, settledBefore: later.json.data.transferId };
    const books = await runInDurableObject(walletStub(env, alice.id), (instance: WalletDO) => instance.books(alice.id, horizon));
    expect(books).toMatchObject({
      opened: true,
      problems: [],
      balance: 71,
      atCut: { balance: 80 },
      pending: { count: 0, amount: 0 },
      stuckCount: 0,
      // Debits are summed by whole minutes (a bounded read): the later one, in the cut's minute, counts too.
      inFlightBound: 20 + 9,
    });
    expect(books.totals.transfer_out).toEqual({ amount: 29, count: 2 });
    expect(books.atCut.totals.transfer_out).toEqual({ amount: 20, count: 1 });
    expect(books.settled).toEqual({ posted: { count: 1, amount: 20 }, credits: { count: 0, amount: 0 } });
    const received = await runInDurableObject(walletStub(env, bob.id), (instance: WalletDO) => instance.books(bob.id, horizon));
    expect(received.settled).toEqual({ posted: { count: 0, amount: 0 }, credits: { count: 1, amount: 20 } });
    const stranger = newId();
    const unopened = await runInDurableObject(walletStub(env, stranger), (instance: WalletDO) =>
      instance.books(stranger, { cutoffAt: cut, stuckBefore: 0, inFlightHorizonMs: 0, settledBefore: "" }),
    );
    expect(unopened).toMatchObject({ opened: false, balance: 0, problems: [] });
  });
});
