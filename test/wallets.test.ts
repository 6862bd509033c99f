import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MIGRATIONS } from "../src/durable-objects/wallet/wallet-schema";
import { openWallet, walletStub } from "../src/services/wallets";
import { call } from "./support/http";
import { seedUser } from "./support/users";

describe("opening a wallet", () => {
  it("applies the signup grant exactly once, even when opened twice at the same time", async () => {
    const user = await seedUser();
    const [a, b] = await Promise.all([openWallet(env, user.id), openWallet(env, user.id)]);
    expect(a.balance).toBe(100);
    expect(b.balance).toBe(100);
    const again = await openWallet(env, user.id);
    expect(again).toMatchObject({ userId: user.id, balance: 100 });
    const grants = await runInDurableObject(walletStub(env, user.id), (_instance, state) =>
      state.storage.sql.exec("SELECT kind, amount, balance_after FROM entries").toArray(),
    );
    expect(grants).toEqual([{ kind: "grant", amount: 100, balance_after: 100 }]);
  });

  it("the welcome grant's entry has a 24-hex transferId like every ID, and stays the only one after many opens", async () => {
    const user = await seedUser();
    await Promise.all(Array.from({ length: 5 }, () => openWallet(env, user.id)));
    for (let i = 0; i < 3; i++) await openWallet(env, user.id);
    const page = await call("GET", "/api/v1/wallets/me/transactions", { token: user.token });
    expect(page.status).toBe(200);
    expect(page.json.data.items).toEqual([
      expect.objectContaining({
        kind: "grant",
        amount: 100,
        balanceAfter: 100,
        transferId: expect.stringMatching(/^[0-9a-f]{24}$/),
      }),
    ]);
  });

  it("grants SIGNUP_CREDITS as configured (0 writes no entry)", async () => {
    const user = await seedUser();
    const wallet = await openWallet({ ...env, SIGNUP_CREDITS: "0" }, user.id);
    expect(wallet.balance).toBe(0);
    const entries = await runInDurableObject(walletStub(env, user.id), (_instance, state) =>
      state.storage.sql.exec("SELECT * FROM entries").toArray(),
    );
    expect(entries).toEqual([]);
  });

  it("v2 backfills the per-minute send counters from the ledger", async () => {
    const user = await seedUser();
    await openWallet(env, user.id);
    const counters = await runInDurableObject(walletStub(env, user.id), (_instance, state) => {
      const sql = state.storage.sql;
      // Replay v2 over a ledger that predates it.
      sql.exec("DROP TABLE sent_by_minute");
      sql.exec(
        "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, created_at) VALUES ('e1', 't1', 'transfer_out', -5, 95, 120000), ('e2', 't2', 'transfer_out', -7, 88, 150000), ('e3', 't3', 'transfer_out', -1, 87, 185000)",
      );
      sql.exec(MIGRATIONS[1]!);
      return sql.exec("SELECT minute, amount FROM sent_by_minute ORDER BY minute").toArray();
    });
    expect(counters).toEqual([
      { minute: 2, amount: 12 },
      { minute: 3, amount: 1 },
    ]);
  });

  it("migrates its schema once and records the version", async () => {
    const user = await seedUser();
    await openWallet(env, user.id);
    const version = await runInDurableObject(
      walletStub(env, user.id),
      (_instance, state) => state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
    );
    expect(version).toBe(MIGRATIONS.length);
  });
});
