import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { queryEveryChat } from "../support/chats";
import { balanceOf, rowsOf, seedWalletUser, transfer } from "../support/wallets";

describe("credit transfers under concurrency", () => {
  it("30 concurrent transfers of 10 from 100: exactly 10 succeed, 20 get 409, balance 0", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const results = await Promise.all(
      Array.from({ length: 30 }, () => transfer(alice.token, { recipientId: bob.id, amount: 10 })),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.filter((s) => s === 409)).toHaveLength(20);
    for (const r of results.filter((r) => r.status === 409)) expect(r.json.code).toBe("insufficient_balance");
    expect(await balanceOf(alice.id)).toBe(0);
    expect(await balanceOf(bob.id)).toBe(200);
    // Every success reports a distinct sender balance 90, 80, … 0: the debits were serialized.
    const senderBalances = results.filter((r) => r.status === 201).map((r) => r.json.data.senderBalance);
    expect(senderBalances.sort((a, b) => a - b)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(
      await queryEveryChat("SELECT id FROM messages WHERE sender_id = ? AND type = 'credit_transfer'", alice.id),
    ).toHaveLength(10);
  });

  it("A→B and B→A, 500 each at once: no deadlock, no error but 409s, the sum conserved", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const requests = [];
    for (let i = 0; i < 500; i++) {
      // Each side asks for ~10,000 credits in all while the pair holds 200: most must be refused.
      requests.push(transfer(alice.token, { recipientId: bob.id, amount: 1 + (i % 40) }));
      requests.push(transfer(bob.token, { recipientId: alice.id, amount: 1 + (i % 37) }));
    }
    const results = await Promise.all(requests);
    const unexpected = results.filter((r) => r.status !== 201 && !(r.status === 409 && r.json.code === "insufficient_balance"));
    expect(unexpected.map((r) => `${r.status} ${r.text.slice(0, 200)}`)).toEqual([]);
    expect(results.filter((r) => r.status === 201).length).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 409).length).toBeGreaterThan(0);
    const a = await balanceOf(alice.id);
    const b = await balanceOf(bob.id);
    expect(a + b).toBe(200);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(b).toBeGreaterThanOrEqual(0);
    const posted = results.filter((r) => r.status === 201).length;
    const outs = await rowsOf(alice.id, "SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'posted'");
    const outsB = await rowsOf(bob.id, "SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'posted'");
    expect(Number(outs[0]!.n) + Number(outsB[0]!.n)).toBe(posted);
  }, 120_000);

  it("the same key 10 times in a row and 20 times at once: one debit, every answer the same", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const body = { recipientId: bob.id, amount: 25 };
    const sequential = [];
    for (let i = 0; i < 10; i++) sequential.push(await transfer(alice.token, body, { key: "seq-key" }));
    expect(new Set(sequential.map((r) => r.text)).size).toBe(1);
    expect(sequential.map((r) => r.headers.get("Idempotent-Replayed"))).toEqual([null, ...Array(9).fill("true")]);

    const concurrent = await Promise.all(Array.from({ length: 20 }, () => transfer(alice.token, body, { key: "par-key" })));
    expect(concurrent.every((r) => r.status === 201)).toBe(true);
    expect(new Set(concurrent.map((r) => r.json.data.transferId)).size).toBe(1);
    expect(new Set(concurrent.map((r) => JSON.stringify(r.json.data))).size).toBe(1);
    expect(await balanceOf(alice.id)).toBe(50);
    expect(await balanceOf(bob.id)).toBe(150);
    expect(await rowsOf(alice.id, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_out'")).toEqual([{ n: 2 }]);
    expect(await rowsOf(bob.id, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_in'")).toEqual([{ n: 2 }]);
  });
});
