/**
 * Grant keys as API.md §1 says: the granted user's object is their only registry (no D1 row),
 * scoped per admin, a stored outcome replayed first, another body 409, kept 24 h after the grant.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { getConfig } from "../../src/lib/config";
import { IDEMPOTENCY_RETENTION_MS } from "../../src/lib/idempotency";
import { grantCredits } from "../../src/services/wallets";
import { countingD1 } from "../support/d1-counter";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import { balanceOf, runRecovery, seedWalletUser } from "../support/wallets";

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
