/**
 * The wallet's recovery alarm: it leaves a transfer alone while its own request may still be
 * finishing it, does a bounded page of work per run, and when nothing is pending sleeps until the
 * next idempotency key expires. Its queries are index lookups, never scans of a wallet's history.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RECOVERY_SQL } from "../../src/durable-objects/wallet/wallet-schema";
import { IN_FLIGHT_MS, RECOVERY_PAGE } from "../../src/durable-objects/wallet/wallet-types";
import { IDEMPOTENCY_RETENTION_MS } from "../../src/lib/idempotency";
import { walletStub } from "../../src/services/wallets";
import { balanceOf, inWallet, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

const pendingCount = async (userId: string) =>
  Number((await rowsOf(userId, "SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'pending'"))[0]!.n);

describe("the recovery alarm", () => {
  it("leaves a transfer in its request's in-flight window alone, then finishes it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.armFault("after_debit"));
    await transfer(alice.token, { recipientId: bob.id, amount: 25 });
    // The alarm fires (it was set with the debit) but the transfer is not due yet.
    await inWallet(alice.id, (wallet) => wallet.advanceClock(IN_FLIGHT_MS - 1_000));
    expect(await runDurableObjectAlarm(walletStub(env, alice.id))).toBe(true);
    expect(await pendingCount(alice.id)).toBe(1);
    expect(await balanceOf(bob.id)).toBe(100);
    // Once due, the alarm set for it finishes it.
    expect(await runRecovery(alice.id, 1_001)).toBe(true);
    expect(await pendingCount(alice.id)).toBe(0);
    expect(await balanceOf(bob.id)).toBe(125);
  });

  it(`ends at most ${RECOVERY_PAGE} transfers per run and comes back for the rest`, async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const count = RECOVERY_PAGE + 5;
    await inWallet(alice.id, (wallet) => wallet.armFault("after_debit", count));
    for (let i = 0; i < count; i++) await transfer(alice.token, { recipientId: bob.id, amount: 1 });
    expect(await pendingCount(alice.id)).toBe(count);
    await runRecovery(alice.id);
    expect(await pendingCount(alice.id)).toBe(5);
    // The next run is due now, not in 24 h.
    const nextAlarm = await inWallet(alice.id, (_wallet, state) => state.storage.getAlarm());
    expect(nextAlarm).not.toBeNull();
    expect(nextAlarm!).toBeLessThanOrEqual(Date.now() + IN_FLIGHT_MS + 5_000);
    await runRecovery(alice.id, 0);
    expect(await pendingCount(alice.id)).toBe(0);
    expect(await balanceOf(bob.id)).toBe(100 + count);
  });

  it("with nothing pending, the next alarm is the next key expiry, not a poll", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "expires" })).status).toBe(201);
    // A key is kept from the transfer's end (posted), API.md §1.
    const [row] = await rowsOf(alice.id, "SELECT posted_at FROM transfers_out");
    await runRecovery(alice.id);
    const nextAlarm = await inWallet(alice.id, (_wallet, state) => state.storage.getAlarm());
    expect(nextAlarm).toBe(Number(row!.posted_at) + IDEMPOTENCY_RETENTION_MS + 1);
  });

  it("a failed attempt backs off instead of retrying at once", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(bob.id, (wallet) => wallet.failCredits(2));
    await transfer(alice.token, { recipientId: bob.id, amount: 5 });
    const [before] = await rowsOf(alice.id, "SELECT retry_at, attempts FROM transfers_out");
    await runRecovery(alice.id);
    const [after] = await rowsOf(alice.id, "SELECT retry_at, attempts, state FROM transfers_out");
    expect(after).toMatchObject({ attempts: 1, state: "pending" });
    expect(Number(after!.retry_at)).toBeGreaterThan(Number(before!.retry_at) + IN_FLIGHT_MS);
  });
});

describe("recovery and key expiry read indexes, not history", () => {
  const parameters: Record<keyof typeof RECOVERY_SQL, unknown[]> = {
    due: [Date.now(), RECOVERY_PAGE],
    nextDue: [],
    oldestTransferKey: [],
    oldestRefusal: [],
    oldestGrantKey: [],
    expireTransferKeys: [Date.now(), 500],
    expireRefusals: [Date.now(), 500],
    expireGrantKeys: [Date.now(), 500],
    oldestGrantClaim: [],
    expireGrantClaims: [Date.now(), 500],
  };
  for (const [name, query] of Object.entries(RECOVERY_SQL) as [keyof typeof RECOVERY_SQL, string][]) {
    it(`${name} uses an index`, async () => {
      const alice = await seedWalletUser();
      const plan = await inWallet(alice.id, (_wallet, state) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...parameters[name])
          .toArray()
          .map((row) => row.detail),
      );
      const touchesTable = plan.filter((detail) => /\b(transfers_out|refusals|grants|grant_claims)\b/.test(detail));
      expect(touchesTable.length).toBeGreaterThan(0);
      for (const detail of touchesTable) {
        // A full scan reads "SCAN <table>" with no index; a lookup reads "SEARCH … USING …INDEX" (or a covering index scan of a partial index).
        expect(detail, plan.join(" | ")).toMatch(/USING (COVERING )?INDEX|USING INTEGER PRIMARY KEY|USING ROWID/);
      }
    });
  }
});
