import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { WalletSummary } from "../../src/durable-objects/wallet/wallet-types";
import { reconcileSummaries } from "../../src/services/wallets";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import { balanceOf, rowsOf, seedWalletUser, transfer } from "../support/wallets";

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

describe("GET /api/v1/admin/reconciliation", () => {
  it("403 for non-admins", async () => {
    const alice = await seedWalletUser();
    expectError(await call("GET", "/api/v1/admin/reconciliation", { token: alice.token }), 403, "insufficient_permissions");
  });

  it("balances the books after transfers and grants, and finds a planted error", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await transfer(alice.token, { recipientId: bob.id, amount: 40 });
    await grant(admin.token, bob.id, { amount: 10, reason: "r" });
    const clean = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    expect(clean.status).toBe(200);
    expect(clean.json.data.discrepancies).toEqual([]);
    expect(clean.json.data.pendingTransfers).toBe(0);
    expect(clean.json.data.totalBalance).toBe(clean.json.data.totalGranted);
    expect(clean.json.data.wallets).toBeGreaterThanOrEqual(3);

    // Tamper: credits appear from nowhere in Bob's wallet.
    await rowsOf(bob.id, "UPDATE wallet SET balance = balance + 1");
    const dirty = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    const kinds = dirty.json.data.discrepancies.map((d: { kind: string }) => d.kind);
    expect(kinds).toContain("wallet_ledger");
    expect(kinds).toContain("totals");
    await rowsOf(bob.id, "UPDATE wallet SET balance = balance - 1");

    // Tamper: a posted transfer loses its message.
    await env.DB.prepare("UPDATE messages SET transfer_id = NULL WHERE sender_id = ?").bind(alice.id).run();
    const lost = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    expect(lost.json.data.discrepancies.map((d: { kind: string }) => d.kind)).toEqual(["transfer_message_count"]);
  });
});

describe("reconcileSummaries (the checks on crafted books)", () => {
  const a = "64d15f9e2e6c8f4d5a00000a";
  const b = "64d15f9e2e6c8f4d5a00000b";
  const wallet = (userId: string, balance: number, granted: number, extra: Partial<WalletSummary> = {}): WalletSummary => ({
    userId,
    opened: true,
    balance,
    granted,
    problems: [],
    outgoing: [],
    incoming: [],
    ...extra,
  });
  const posted = { transferId: "t1", recipientId: b, amount: 25, state: "posted" as const, messageId: "m1" };
  const credit = { transferId: "t1", senderId: a, amount: 25, messageId: "m1" };
  const message = { id: "m1", transferId: "t1", senderId: a, recipientId: b, amount: 25 };

  it("clean books", () => {
    const books = reconcileSummaries(
      [wallet(a, 75, 100, { outgoing: [posted] }), wallet(b, 125, 100, { incoming: [credit] })],
      [message],
    );
    expect(books).toEqual({
      wallets: 2,
      totalBalance: 200,
      totalGranted: 200,
      pendingTransfers: 0,
      inFlightAmount: 0,
      discrepancies: [],
    });
  });

  it("a pending transfer not yet credited is in flight, not a discrepancy", () => {
    const books = reconcileSummaries(
      [wallet(a, 75, 100, { outgoing: [{ ...posted, state: "pending", messageId: null }] }), wallet(b, 100, 100)],
      [],
    );
    expect(books).toMatchObject({ pendingTransfers: 1, inFlightAmount: 25, discrepancies: [] });
  });

  it("finds each kind of error", () => {
    const kinds = (summaries: WalletSummary[], messages: (typeof message)[]) =>
      reconcileSummaries(summaries, messages)
        .discrepancies.map((d) => d.kind)
        .sort();
    // Posted but never credited: money vanished.
    expect(kinds([wallet(a, 75, 100, { outgoing: [posted] }), wallet(b, 100, 100)], [message])).toEqual([
      "totals",
      "unpaired_transfer_out",
    ]);
    // Credited twice (two wallets claim it): money created.
    expect(
      kinds(
        [
          wallet(a, 75, 100, { outgoing: [posted] }),
          wallet(b, 125, 100, { incoming: [credit] }),
          wallet("c", 25, 0, { incoming: [credit] }),
        ],
        [message],
      ),
    ).toEqual(["duplicate_transfer_in", "mismatched_transfer_in", "totals"]);
    // A credit with no debit.
    expect(kinds([wallet(a, 100, 100), wallet(b, 125, 100, { incoming: [credit] })], [])).toEqual([
      "orphan_transfer_in",
      "totals",
    ]);
    // The message: missing, doubled, wrong, or without a transfer.
    const books = [wallet(a, 75, 100, { outgoing: [posted] }), wallet(b, 125, 100, { incoming: [credit] })];
    expect(kinds(books, [])).toEqual(["transfer_message_count"]);
    expect(kinds(books, [message, { ...message, id: "m2" }])).toEqual(["mismatched_transfer_message", "transfer_message_count"]);
    expect(kinds(books, [{ ...message, recipientId: a }])).toEqual(["mismatched_transfer_message"]);
    expect(kinds(books, [message, { ...message, id: "m9", transferId: "t9" }])).toEqual(["orphan_transfer_message"]);
    // A wallet's own ledger problem is passed through.
    expect(kinds([wallet(a, 100, 100, { problems: ["entry x: balanceAfter 5, expected 6"] })], [])).toEqual(["wallet_ledger"]);
  });
});
