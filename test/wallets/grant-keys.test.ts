/**
 * Grant keys as API.md §1 says: one scope per admin (the admin's object claims each key for one
 * user and request; the granted user's object keeps the grant and its 201; no D1 row), a stored
 * outcome replayed first, another body or user 409, kept 24 h after the grant, nothing kept on 5xx.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { CLAIM_MARGIN_MS, CLAIM_PENDING_MS } from "../../src/durable-objects/wallet/grant-claims";
import { getConfig } from "../../src/lib/config";
import { IDEMPOTENCY_RETENTION_MS } from "../../src/lib/idempotency";
import { grantCredits } from "../../src/services/wallets";
import { countingD1 } from "../support/d1-counter";
import { call, expectError } from "../support/http";
import { seedUser, setSuspended } from "../support/users";
import { balanceOf, inWallet, rowsOf, runRecovery, seedWalletUser } from "../support/wallets";

const grant = (token: string, userId: string, body: unknown, key?: string) =>
  call("POST", `/api/v1/admin/wallets/${userId}/grants`, { token, body, headers: key ? { "Idempotency-Key": key } : {} });

const d1KeysOf = async (userId: string) =>
  (await env.DB.prepare("SELECT key FROM idempotency_keys WHERE user_id = ?").bind(userId).all()).results;

describe("grant keys owned by the user's object", () => {
  it("no D1 registration; one scope per admin: another admin's same key is another grant", async () => {
    const first = await seedUser({ role: "admin" });
    const second = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const granted = await grant(first.token, alice.id, { amount: 10, reason: "one" }, "shared-key");
    expect(granted.status).toBe(201);
    const replay = await grant(first.token, alice.id, { amount: 10, reason: "one" }, "shared-key");
    expect(replay.text).toBe(granted.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expectError(await grant(first.token, alice.id, { amount: 11, reason: "one" }, "shared-key"), 409, "idempotency_key_reused");
    // Across scopes a key is not compared.
    const other = await grant(second.token, alice.id, { amount: 20, reason: "two" }, "shared-key");
    expect(other.status).toBe(201);
    expect(other.headers.get("Idempotent-Replayed")).toBeNull();
    expect(other.json.data.grantId).not.toBe(granted.json.data.grantId);
    expect(await balanceOf(alice.id)).toBe(130);
    expect(await d1KeysOf(first.id)).toEqual([]);
    expect(await d1KeysOf(second.id)).toEqual([]);
  });

  it("a grant key is kept 24 h after the grant, then the key is free", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const body = { amount: 5, reason: "kept" };
    const first = await grant(admin.token, alice.id, body, "kept-key");
    await runRecovery(alice.id, IDEMPOTENCY_RETENTION_MS - 60_000);
    const replay = await grant(admin.token, alice.id, body, "kept-key");
    expect(replay.text).toBe(first.text);
    await runRecovery(alice.id, 120_000);
    const again = await grant(admin.token, alice.id, body, "kept-key");
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await balanceOf(alice.id)).toBe(110);
  });

  it("a replayed grant key is answered by the user's object alone, with no D1 query", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const config = getConfig(env);
    const body = { amount: 12, reason: "replayed" };
    const caller = { adminId: admin.id, requestId: "test-request", refusal: null };
    const ignore = () => {};
    const first = await grantCredits(env, config, caller, alice.id, body, "no-d1", ignore);
    expect(first.status).toBe(201);
    const counting = countingD1(env.DB);
    const replay = await grantCredits({ ...env, DB: counting.d1 }, config, caller, alice.id, body, "no-d1", ignore);
    expect(replay).toEqual({ ...first, replayed: true });
    expect(counting.roundTrips).toEqual([]);
    expect(await balanceOf(alice.id)).toBe(112);
  });
});

const claimsOf = (adminId: string) =>
  rowsOf(adminId, "SELECT idempotency_key AS key, target_id AS targetId, state FROM grant_claims ORDER BY idempotency_key");

describe("one grant-key scope per admin, across the users granted", () => {
  it("the same admin's key for user X, then for user Y, is 409 idempotency_key_reused; Y gets nothing", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    const body = { amount: 10, reason: "one" };
    const first = await grant(admin.token, x.id, body, "k-xy");
    expect(first.status).toBe(201);
    expectError(await grant(admin.token, y.id, body, "k-xy"), 409, "idempotency_key_reused");
    expect(await balanceOf(y.id)).toBe(100);
    // The key still replays for X.
    const replay = await grant(admin.token, x.id, body, "k-xy");
    expect(replay.text).toBe(first.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await balanceOf(x.id)).toBe(110);
    expect(await claimsOf(admin.id)).toEqual([{ key: "k-xy", targetId: x.id, state: "done" }]);
  });

  it("the same key, user and body replays the 201 with Idempotent-Replayed: true; one grant", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const body = { amount: 7, reason: "again" };
    const first = await grant(admin.token, x.id, body, "k-same");
    const replays = await Promise.all([1, 2, 3].map(() => grant(admin.token, x.id, body, "k-same")));
    for (const replay of replays) {
      expect(replay.status).toBe(201);
      expect(replay.text).toBe(first.text);
      expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    }
    expect(await rowsOf(x.id, "SELECT grant_id FROM grants WHERE granted_by IS NOT NULL")).toHaveLength(1);
    expect(await balanceOf(x.id)).toBe(107);
  });

  it("two admins may use the same key for the same user: across scopes a key is not compared", async () => {
    const first = await seedUser({ role: "admin" });
    const second = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const a = await grant(first.token, x.id, { amount: 10, reason: "a" }, "k-two-admins");
    const b = await grant(second.token, x.id, { amount: 10, reason: "a" }, "k-two-admins");
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers.get("Idempotent-Replayed")).toBeNull();
    expect(b.json.data.grantId).not.toBe(a.json.data.grantId);
    expect(await balanceOf(x.id)).toBe(120);
  });

  it("a grant failing with a 5xx stores nothing: a corrected retry with the same key and another body runs", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    await inWallet(x.id, (wallet) => wallet.failGrants(1));
    const failed = await grant(admin.token, x.id, { amount: 10, reason: "wrong user" }, "k-5xx");
    expect(failed.status).toBe(500);
    expect(await claimsOf(admin.id)).toEqual([]);
    const corrected = await grant(admin.token, y.id, { amount: 15, reason: "right user" }, "k-5xx");
    expect(corrected.status).toBe(201);
    expect(corrected.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await balanceOf(x.id)).toBe(100);
    expect(await balanceOf(y.id)).toBe(115);
    // A grant refused before it executed (404) keeps nothing either.
    expectError(
      await grant(admin.token, "0123456789abcdef01234567", { amount: 1, reason: "nobody" }, "k-404"),
      404,
      "user_not_found",
    );
    expect((await grant(admin.token, x.id, { amount: 1, reason: "somebody" }, "k-404")).status).toBe(201);
  });

  it("concurrent requests with one key for two users make exactly one grant", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    const body = { amount: 10, reason: "race" };
    const answers = await Promise.all([
      grant(admin.token, x.id, body, "k-race"),
      grant(admin.token, y.id, body, "k-race"),
      grant(admin.token, x.id, body, "k-race"),
      grant(admin.token, y.id, body, "k-race"),
    ]);
    const granted = answers.filter((answer) => answer.status === 201);
    expect(new Set(granted.map((answer) => answer.json.data.grantId)).size).toBe(1);
    for (const answer of answers.filter((a) => a.status !== 201)) expectError(answer, 409, "idempotency_key_reused");
    expect((await balanceOf(x.id)) + (await balanceOf(y.id))).toBe(210);
  });

  it("a stored grant answers its key before the admin check; another user is 409 even then", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    const body = { amount: 10, reason: "lost 201" };
    const first = await grant(admin.token, x.id, body, "k-suspended");
    await setSuspended(admin.id, true);
    const replay = await grant(admin.token, x.id, body, "k-suspended");
    expect(replay.text).toBe(first.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expectError(await grant(admin.token, y.id, body, "k-suspended"), 409, "idempotency_key_reused");
    expectError(await grant(admin.token, y.id, body, "k-new"), 403, "account_suspended");
    await setSuspended(admin.id, false);
    expect((await grant(admin.token, y.id, body, "k-new")).status).toBe(201);
  });

  it("a claim left pending by a request that died blocks another body only a short while, unless its grant happened", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    await grant(admin.token, x.id, { amount: 10, reason: "granted" }, "k-died-granted");
    // The first request died after the grant, before settling; another died before its grant.
    await inWallet(admin.id, (_wallet, state) => {
      state.storage.sql.exec("UPDATE grant_claims SET state = 'pending'");
      const now = _wallet.clock();
      state.storage.sql.exec(
        "INSERT INTO grant_claims VALUES ('k-died-early', ?, 'another', 'dead', 'pending', ?, ?)",
        x.id,
        now,
        now,
      );
    });
    const body = { amount: 5, reason: "other user" };
    expectError(await grant(admin.token, y.id, body, "k-died-early"), 409, "idempotency_key_reused");
    await inWallet(admin.id, (wallet) => wallet.advanceClock(CLAIM_PENDING_MS + 1));
    expect((await grant(admin.token, y.id, body, "k-died-early")).status).toBe(201);
    // The target of the other stale claim did grant: the key is that grant's.
    expectError(await grant(admin.token, y.id, body, "k-died-granted"), 409, "idempotency_key_reused");
    expect(await claimsOf(admin.id)).toEqual([
      { key: "k-died-early", targetId: y.id, state: "done" },
      { key: "k-died-granted", targetId: x.id, state: "done" },
    ]);
    expect(await balanceOf(x.id)).toBe(110);
    expect(await balanceOf(y.id)).toBe(105);
  });

  it("the admin's claim is kept past the grant's 24 h, then expired by the admin's alarm: the key is free", async () => {
    const admin = await seedUser({ role: "admin" });
    const x = await seedWalletUser();
    const y = await seedWalletUser();
    const body = { amount: 10, reason: "kept" };
    await grant(admin.token, x.id, body, "k-expiry");
    await runRecovery(admin.id, IDEMPOTENCY_RETENTION_MS);
    expectError(await grant(admin.token, y.id, body, "k-expiry"), 409, "idempotency_key_reused");
    await runRecovery(admin.id, CLAIM_MARGIN_MS + 1_000);
    expect(await claimsOf(admin.id)).toEqual([]);
    expect((await grant(admin.token, y.id, body, "k-expiry")).status).toBe(201);
    expect(await balanceOf(y.id)).toBe(110);
  });
});
