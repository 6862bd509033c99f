import { describe, expect, it } from "vitest";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import { seedWalletUser, transfer } from "../support/wallets";

describe("GET /api/v1/wallets/me*", () => {
  it("the wallet: balance and updatedAt; a never-opened wallet opens with the welcome grant", async () => {
    const fresh = await seedUser();
    const res = await call("GET", "/api/v1/wallets/me", { token: fresh.token });
    expect(res.status).toBe(200);
    expect(res.json.data).toEqual({ userId: fresh.id, balance: 100, updatedAt: expect.stringMatching(/Z$/) });
    expect((await call("GET", "/api/v1/wallets/me", { token: fresh.token })).json.data.balance).toBe(100);
    expectError(await call("GET", "/api/v1/wallets/me"), 401, "authentication_required");
  });

  it("transactions: newest first, LedgerEntry shape, cursor pages with no gaps or repeats", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const sent: string[] = [];
    for (let i = 1; i <= 5; i++)
      sent.push((await transfer(alice.token, { recipientId: bob.id, amount: i, note: `n${i}` })).json.data.transferId);
    const received = await transfer(bob.token, { recipientId: alice.id, amount: 7 });

    const first = await call("GET", "/api/v1/wallets/me/transactions?limit=3", { token: alice.token });
    expect(first.status).toBe(200);
    expect(first.json.data.items).toHaveLength(3);
    expect(first.json.data.items[0]).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{24}$/),
      transferId: received.json.data.transferId,
      kind: "transfer_in",
      amount: 7,
      balanceAfter: 92,
      counterpartyId: bob.id,
      messageId: received.json.data.messageId,
      note: null,
      createdAt: expect.stringMatching(/Z$/),
    });
    expect(first.json.data.items[1]).toMatchObject({
      transferId: sent[4],
      kind: "transfer_out",
      amount: -5,
      balanceAfter: 85,
      note: "n5",
    });
    const second = await call("GET", `/api/v1/wallets/me/transactions?limit=3&cursor=${first.json.data.nextCursor}`, {
      token: alice.token,
    });
    const third = await call("GET", `/api/v1/wallets/me/transactions?limit=3&cursor=${second.json.data.nextCursor}`, {
      token: alice.token,
    });
    expect(third.json.data.nextCursor).toBeNull();
    const all = [...first.json.data.items, ...second.json.data.items, ...third.json.data.items];
    expect(all.map((e: { kind: string; amount: number }) => `${e.kind}:${e.amount}`)).toEqual([
      "transfer_in:7",
      "transfer_out:-5",
      "transfer_out:-4",
      "transfer_out:-3",
      "transfer_out:-2",
      "transfer_out:-1",
      "grant:100",
    ]);
    // The chain: each balanceAfter is the next older one plus its amount.
    for (let i = 0; i < all.length - 1; i++) expect(all[i].balanceAfter).toBe(all[i + 1].balanceAfter + all[i].amount);
    const defaults = await call("GET", "/api/v1/wallets/me/transactions", { token: alice.token });
    expect(defaults.json.data.items).toHaveLength(7);
    expect(defaults.json.data.nextCursor).toBeNull();
  });

  it("transactions: limit out of range and a forged cursor are 400", async () => {
    const alice = await seedWalletUser();
    for (const q of ["limit=0", "limit=101", "limit=abc", "cursor=garbage"]) {
      expectError(await call("GET", `/api/v1/wallets/me/transactions?${q}`, { token: alice.token }), 400, "validation_failed");
    }
  });

  it("limits: per-transfer max and the rolling window from their vars", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await transfer(alice.token, { recipientId: bob.id, amount: 30 });
    const res = await call("GET", "/api/v1/wallets/me/limits", { token: alice.token });
    expect(res.json.data).toEqual({
      perTransferMax: 100000,
      windowHours: 24,
      windowLimit: 1000000,
      windowUsed: 30,
      windowRemaining: 999970,
    });
    const bobs = await call("GET", "/api/v1/wallets/me/limits", { token: bob.token, vars: { MAX_TRANSFER_AMOUNT: "500" } });
    expect(bobs.json.data).toMatchObject({ perTransferMax: 500, windowUsed: 0, windowRemaining: 1000000 });
  });

  it("a transfer, for its sender and its recipient only", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const eve = await seedWalletUser();
    const sent = await transfer(alice.token, { recipientId: bob.id, amount: 25, note: "lunch" });
    const path = `/api/v1/wallets/me/transfers/${sent.json.data.transferId}`;
    const asSender = await call("GET", path, { token: alice.token });
    expect(asSender.status).toBe(200);
    expect(asSender.json.data).toEqual(sent.json.data);
    const asRecipient = await call("GET", path, { token: bob.token });
    expect(asRecipient.json.data).toEqual(sent.json.data);
    expectError(await call("GET", path, { token: eve.token }), 404, "transfer_not_found");
    expectError(
      await call("GET", "/api/v1/wallets/me/transfers/64d15f9e2e6c8f4d5a000002", { token: alice.token }),
      404,
      "transfer_not_found",
    );
    expectError(await call("GET", "/api/v1/wallets/me/transfers/nope", { token: alice.token }), 400, "validation_failed");
  });
});
