/**
 * Group commit (issue 12): transfer requests that queue up while the sender's wallet is busy are
 * committed as one group (one transaction for their debits, one D1 batch for their messages, one
 * transaction marking them posted), and each request still gets exactly the answer it would have
 * got alone: checked in arrival order, refused in order, its key replayed byte for byte.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_GROUP } from "../../src/durable-objects/wallet/group-commit";
import { queryChat, queryEveryChat } from "../support/chats";
import { call, expectError } from "../support/http";
import { balanceOf, inWallet, NO_RATE_LIMIT, oneGroup, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

type Answer = Awaited<ReturnType<typeof transfer>>;

describe("group commit in the sender's wallet", () => {
  it("commits N queued transfers as one group: refusals in arrival order, each answer its own, each key's replay exact", async () => {
    const alice = await seedWalletUser(); // 100 credits
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    const requests = [
      { key: "g-1", body: { recipientId: bob.id, amount: 40, note: "first" } },
      { key: "g-2", body: { recipientId: carol.id, amount: 50 } },
      { key: "g-3", body: { recipientId: bob.id, amount: 30 } }, // 10 left: refused, stored
      { key: "g-4", body: { recipientId: alice.id, amount: 5 } }, // yourself: 400, stores nothing
      { key: "g-5", body: { recipientId: carol.id, amount: 10 } }, // exactly the 10 left
      { key: "g-1", body: { recipientId: bob.id, amount: 40, note: "first" } }, // a retry while its original is in the group
      { key: "g-6", body: { recipientId: bob.id, amount: 1 } }, // 0 left
      { key: "g-2", body: { recipientId: carol.id, amount: 51 } }, // the key with another body
      { body: { recipientId: bob.id, amount: 1 } }, // no key: 0 left
    ];
    const answers = await oneGroup(alice.id, alice.token, requests);
    expect(await inWallet(alice.id, (wallet) => wallet.groupSizes)).toEqual([requests.length]);

    const [first, second, third, fourth, fifth, retry, sixth, reused, unkeyed] = answers as [
      Answer,
      Answer,
      Answer,
      Answer,
      Answer,
      Answer,
      Answer,
      Answer,
      Answer,
    ];
    expect([first.status, second.status, fifth.status]).toEqual([201, 201, 201]);
    expect([first.json.data.senderBalance, second.json.data.senderBalance, fifth.json.data.senderBalance]).toEqual([60, 10, 0]);
    expect(expectError(third, 409, "insufficient_balance").errors.join(" ")).toContain("10 available, 30 requested");
    expectError(fourth, 400, "validation_failed");
    expect(expectError(sixth, 409, "insufficient_balance").errors.join(" ")).toContain("0 available, 1 requested");
    expectError(reused, 409, "idempotency_key_reused");
    expect(expectError(unkeyed, 409, "insufficient_balance").errors.join(" ")).toContain("0 available, 1 requested");
    // The retry inside the group is the same transfer, answered as a replay.
    expect(retry.status).toBe(201);
    expect(retry.text).toBe(first.text);
    expect(retry.headers.get("Idempotent-Replayed")).toBe("true");
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    for (const answer of [first, second, fifth]) expect(answer.json.data.status).toBe("posted");

    // Each key replays its own outcome byte for byte; the 400 stored nothing, so its key runs anew.
    for (const [answer, key] of [
      [first, "g-1"],
      [second, "g-2"],
      [third, "g-3"],
      [fifth, "g-5"],
      [sixth, "g-6"],
    ] as const) {
      const request = requests.find((r) => r.key === key)!;
      const replay = await transfer(alice.token, request.body, { key });
      expect(replay.status).toBe(answer.status);
      expect(replay.text).toBe(answer.text);
      expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    }
    expectError(await transfer(alice.token, requests[3]!.body, { key: "g-4" }), 400, "validation_failed");

    // The books: three debits in arrival order, credits delivered, each message posted once, in order.
    expect(await balanceOf(alice.id)).toBe(0);
    expect(await balanceOf(bob.id)).toBe(140);
    expect(await balanceOf(carol.id)).toBe(160);
    const debits = await rowsOf(alice.id, "SELECT amount, balance_after FROM entries WHERE kind = 'transfer_out' ORDER BY seq");
    expect(debits).toEqual([
      { amount: -40, balance_after: 60 },
      { amount: -50, balance_after: 10 },
      { amount: -10, balance_after: 0 },
    ]);
    const posted = [first, second, fifth].map((answer) => answer.json.data);
    const results = (
      await queryEveryChat<{ id: string; seq: number; amount: number }>(
        "SELECT id, seq, transfer_amount AS amount FROM messages WHERE transfer_id IN (?, ?, ?) ORDER BY seq",
        ...posted.map((transfer) => transfer.transferId),
      )
    ).map(({ chat_id, ...row }) => ({ ...row, chatId: chat_id }));
    expect(results).toHaveLength(3);
    for (const transfer of posted) {
      expect(results).toContainEqual({
        id: transfer.messageId,
        chatId: transfer.chatId,
        seq: expect.any(Number),
        amount: transfer.transferredAmount,
      });
    }
    const carolChat = results.filter((row) => row.chatId === second.json.data.chatId).map((row) => [row.seq, row.amount]);
    expect(carolChat).toEqual([
      [1, 50],
      [2, 10],
    ]);
    const received = await call("GET", `/api/v1/wallets/me/transactions?limit=10`, { token: carol.token, vars: NO_RATE_LIMIT });
    expect(received.json.data.items.filter((entry: { kind: string }) => entry.kind === "transfer_in")).toHaveLength(2);
  });

  it("takes at most MAX_GROUP requests per group and commits the rest in the next", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const count = MAX_GROUP + 3;
    const answers = await oneGroup(
      alice.id,
      alice.token,
      Array.from({ length: count }, (_, i) => ({ key: `many-${i}`, body: { recipientId: bob.id, amount: 1 } })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(count).fill(201));
    expect(answers.map((answer) => answer.json.data.senderBalance)).toEqual(Array.from({ length: count }, (_, i) => 99 - i));
    expect(await inWallet(alice.id, (wallet) => wallet.groupSizes)).toEqual([MAX_GROUP, 3]);
    expect(await balanceOf(bob.id)).toBe(100 + count);
    const results = await queryChat<{ seq: number }>(answers[0]!.json.data.chatId, "SELECT seq FROM messages ORDER BY seq");
    expect(results.map((row) => row.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  });

  it("settles each transfer of a group on its own: a recipient that cannot be credited fails only its own, recovery ends it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    await inWallet(bob.id, (wallet) => wallet.failCredits(1));
    const [toBob, toCarol] = await oneGroup(alice.id, alice.token, [
      { key: "down", body: { recipientId: bob.id, amount: 7 } },
      { key: "up", body: { recipientId: carol.id, amount: 3 } },
    ]);
    expect(toBob!.status).toBe(202);
    expect(toBob!.json.data).toMatchObject({ status: "pending", transferredAmount: 7 });
    expect(toCarol!.status).toBe(201);
    expect(await rowsOf(alice.id, "SELECT amount, state FROM transfers_out ORDER BY created_at, transfer_id")).toEqual([
      { amount: 7, state: "pending" },
      { amount: 3, state: "posted" },
    ]);
    expect(await runRecovery(alice.id)).toBe(true);
    expect(await balanceOf(bob.id)).toBe(107);
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 7 }, { key: "down" });
    expect(replay.status).toBe(201);
    expect(replay.json.data).toMatchObject({ status: "posted", transferredAmount: 7, senderBalance: 93, recipientBalance: 107 });
  });
  it("a group where one request's begin throws: that one fails alone, the others are answered 201", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.failBeginsOf(13));
    const [before, poison, after, unkeyed] = await oneGroup(alice.id, alice.token, [
      { key: "ok-1", body: { recipientId: bob.id, amount: 5 } },
      { key: "poison", body: { recipientId: carol.id, amount: 13 } },
      { key: "ok-2", body: { recipientId: carol.id, amount: 7 } },
      { body: { recipientId: bob.id, amount: 2 } },
    ]);
    expect(await inWallet(alice.id, (wallet) => wallet.groupSizes)).toEqual([4]);
    expectError(poison!, 500, "internal_error");
    expect([before!.status, after!.status, unkeyed!.status]).toEqual([201, 201, 201]);
    // Still in arrival order: each debited against what the ones before it left.
    expect([before!.json.data.senderBalance, after!.json.data.senderBalance, unkeyed!.json.data.senderBalance]).toEqual([
      95, 88, 86,
    ]);
    expect(await balanceOf(bob.id)).toBe(107);
    expect(await balanceOf(carol.id)).toBe(107);
    // The failure stored nothing under its key: once the fault is gone, the same key runs.
    await inWallet(alice.id, (wallet) => wallet.failBeginsOf(null));
    const retried = await transfer(alice.token, { recipientId: carol.id, amount: 13 }, { key: "poison" });
    expect(retried.status).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await balanceOf(alice.id)).toBe(73);
  });
});
