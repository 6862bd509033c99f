import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call, expectError } from "../support/http";
import { seedUser, setOwnerRole } from "../support/users";
import { balanceOf, rowsOf, seedWalletUser } from "../support/wallets";

const grant = (token: string, userId: string, body: unknown, key?: string) =>
  call("POST", `/api/v1/admin/wallets/${userId}/grants`, { token, body, headers: key ? { "Idempotency-Key": key } : {} });

describe("admin grants", () => {
  it("201 {grantId, userId, amount, balance} and a grant entry with the reason", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const res = await grant(admin.token, alice.id, { amount: 500, reason: "Compensation" });
    expect(res.status).toBe(201);
    expect(res.json.data).toEqual({
      grantId: expect.stringMatching(/^[0-9a-f]{24}$/),
      userId: alice.id,
      amount: 500,
      balance: 600,
    });
    expect(await rowsOf(alice.id, "SELECT kind, transfer_id, amount, balance_after, note FROM entries WHERE seq > 1")).toEqual([
      { kind: "grant", transfer_id: res.json.data.grantId, amount: 500, balance_after: 600, note: "Compensation" },
    ]);
  });

  it("403 for non-admins, 404 for unknown users, 400 for bad bodies", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    expectError(await grant(alice.token, alice.id, { amount: 5, reason: "me" }), 403, "insufficient_permissions");
    expectError(await grant(admin.token, "64d15f9e2e6c8f4d5a000003", { amount: 5, reason: "x" }), 404, "user_not_found");
    for (const body of [
      { amount: 0, reason: "x" },
      { amount: 1.5, reason: "x" },
      { amount: "5", reason: "x" },
      { amount: 5 },
      { amount: 5, reason: "" },
    ]) {
      expectError(await grant(admin.token, alice.id, body), 400, "validation_failed");
    }
    expectError(await grant(admin.token, "bad", { amount: 5, reason: "x" }), 400, "validation_failed");
    expect(await balanceOf(alice.id)).toBe(100);
  });

  it("a stored grant answers its key before the admin check; a grant refused before executing keeps no key", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const first = await grant(admin.token, alice.id, { amount: 30, reason: "lost 201" }, "g-demoted");
    expect(first.status).toBe(201);
    // The same person, no longer an admin (an operator revoked the role in its owner), retries the lost 201.
    const setRole = (role: "user" | "admin") => setOwnerRole(admin.id, role);
    await setRole("user");
    const replay = await grant(admin.token, alice.id, { amount: 30, reason: "lost 201" }, "g-demoted");
    expect(replay.status).toBe(201);
    expect(replay.text).toBe(first.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    // A new key from a non-admin is refused before executing, and keeps nothing: the key is free.
    expectError(await grant(admin.token, alice.id, { amount: 5, reason: "x" }, "g-free"), 403, "insufficient_permissions");
    expectError(await grant(admin.token, alice.id, { amount: 5, reason: "x" }), 403, "insufficient_permissions");
    const { results } = await env.DB.prepare("SELECT key FROM idempotency_keys WHERE user_id = ? AND key = 'g-free'")
      .bind(admin.id)
      .all();
    expect(results).toEqual([]);
    await setRole("admin");
    expect((await grant(admin.token, alice.id, { amount: 5, reason: "x" }, "g-free")).status).toBe(201);
    expect(await balanceOf(alice.id)).toBe(135);
  });

  it("Idempotency-Key: a replay grants nothing more; another body is 409", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const first = await grant(admin.token, alice.id, { amount: 50, reason: "bonus" }, "g-1");
    const again = await grant(admin.token, alice.id, { reason: "bonus", amount: 50 }, "g-1");
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expectError(await grant(admin.token, alice.id, { amount: 51, reason: "bonus" }, "g-1"), 409, "idempotency_key_reused");
    expectError(await grant(admin.token, alice.id, { amount: 50, reason: "bonus" }, "x".repeat(256)), 400, "validation_failed");
    expect(await balanceOf(alice.id)).toBe(150);
    const concurrent = await Promise.all(
      Array.from({ length: 10 }, () => grant(admin.token, alice.id, { amount: 7, reason: "r" }, "g-2")),
    );
    expect(concurrent.every((r) => r.status === 201)).toBe(true);
    expect(await balanceOf(alice.id)).toBe(157);
  });
});
