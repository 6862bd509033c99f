/**
 * Money protocol v2 (API.md §1 Idempotency and "Every transfer ends"): a stored outcome answers
 * its key before any check; a request that executed nothing keeps nothing; debit, credit, then
 * message; a transfer whose credit cannot happen by its deadline is voided exactly once.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { creditCommandOf } from "../../src/durable-objects/wallet/finisher";
import { VOID_NOTE } from "../../src/durable-objects/wallet/ledger";
import type { TransferOutRow } from "../../src/durable-objects/wallet/wallet-schema";
import { type CreditCommand, FAULT_POINTS, MAX_RETRY_DELAY_MS } from "../../src/durable-objects/wallet/wallet-types";
import { getConfig } from "../../src/lib/config";
import { walletStub } from "../../src/services/wallets";
import { queryEveryChat } from "../support/chats";
import { call, expectError } from "../support/http";
import { connectAs } from "../support/realtime";
import { seedUser } from "../support/users";
import { balanceOf, inWallet, NO_RATE_LIMIT, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

const VOID_AFTER_MS = getConfig(env).transferVoidAfterMs;

async function messagesOf(transferId: string) {
  return (await queryEveryChat("SELECT id FROM messages WHERE transfer_id = ?", transferId)).map(({ id, chat_id }) => ({
    id,
    chat_id,
  }));
}

/** What the sender's object holds under `key`: its registry of the owner's transfer keys (no D1 row any more). */
async function keyRows(userId: string, key: string) {
  return rowsOf(
    userId,
    `SELECT idempotency_key FROM transfers_out WHERE idempotency_key = '${key}'
     UNION ALL SELECT idempotency_key FROM refusals WHERE idempotency_key = '${key}'`,
  );
}

/** The command the sender's wallet hands the recipient's for `transferId` (as a late or racing credit would carry it). */
async function creditCommandFor(senderId: string, transferId: string): Promise<CreditCommand> {
  const [row] = await rowsOf(senderId, `SELECT * FROM transfers_out WHERE transfer_id = '${transferId}'`);
  const sent = row as unknown as TransferOutRow;
  return creditCommandOf(sent, senderId, 100);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a stored outcome answers its key first, whatever changed since", () => {
  type Story = {
    name: string;
    /** What changes after the 201; `refused` is what a NEW request with the same body now gets. */
    change: (alice: { id: string }, bob: { id: string; token: string }) => Promise<{ vars?: Record<string, string> }>;
    refused: [number, string];
    /** Vars of the first request too (the rate-limit story's first request uses up its minute). */
    vars?: Record<string, string>;
  };
  const stories: Story[] = [
    {
      name: "the recipient blocked the sender",
      change: async (alice, bob) => {
        expect((await call("POST", `/api/v1/users/${alice.id}/block`, { token: bob.token })).status).toBe(200);
        return {};
      },
      refused: [403, "recipient_blocked"],
    },
    {
      name: "an admin suspended the sender",
      change: async (alice) => {
        const admin = await seedUser({ role: "admin" });
        const res = await call("POST", `/api/v1/admin/users/${alice.id}/suspension`, {
          token: admin.token,
          body: { reason: "test" },
        });
        expect(res.status).toBe(200);
        return {};
      },
      refused: [403, "account_suspended"],
    },
    {
      name: "the sender is past the per-minute transfer limit",
      change: async () => ({}),
      refused: [429, "rate_limited"],
      vars: { RATE_LIMIT_TRANSFERS_PER_MINUTE: "1" },
    },
    {
      name: "MAX_TRANSFER_AMOUNT was lowered below the amount",
      change: async () => ({ vars: { MAX_TRANSFER_AMOUNT: "10" } }),
      refused: [400, "validation_failed"],
    },
  ];

  for (const story of stories) {
    it(`${story.name}: the retry gets the original 201, byte for byte, with Idempotent-Replayed; a new key is refused`, async () => {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      const body = { recipientId: bob.id, amount: 25 };
      const first = await transfer(alice.token, body, { key: "lost-201", vars: { ...NO_RATE_LIMIT, ...story.vars } });
      expect(first.status).toBe(201);
      const { vars } = await story.change(alice, bob);
      const options = { vars: { ...NO_RATE_LIMIT, ...story.vars, ...vars } };

      const retry = await transfer(alice.token, body, { key: "lost-201", ...options });
      expect(retry.status).toBe(201);
      expect(retry.text).toBe(first.text);
      expect(retry.headers.get("Idempotent-Replayed")).toBe("true");
      // A replay is not a new request: it is not counted against the rate limit either.
      expect(retry.headers.get("X-RateLimit-Remaining")).toBeNull();

      expectError(await transfer(alice.token, body, { key: "a-new-request", ...options }), ...story.refused);
      expect(await balanceOf(alice.id)).toBe(75);
      expect(await balanceOf(bob.id)).toBe(125);
    });
  }
});

describe("a request that executed nothing keeps nothing", () => {
  it("the wallet fails before execution (500): the key is free again, so a corrected retry with it runs", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.failTransfers(1));
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "k5xx" }), 500, "internal_error");
    expect(await keyRows(alice.id, "k5xx")).toEqual([]);
    expect(await balanceOf(alice.id)).toBe(100);

    const corrected = await transfer(alice.token, { recipientId: bob.id, amount: 30 }, { key: "k5xx" });
    expect(corrected.status).toBe(201);
    expect(corrected.json.data).toMatchObject({ transferredAmount: 30, senderBalance: 70 });
  });

  it("after a 500 before execution the key can serve another endpoint (it was never used)", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.failTransfers(1));
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "shared" }), 500, "internal_error");
    const sent = await call("POST", "/api/v1/messages", {
      token: alice.token,
      body: { recipientId: bob.id, content: "hi" },
      headers: { "Idempotency-Key": "shared" },
      vars: NO_RATE_LIMIT,
    });
    expect(sent.status).toBe(201);
  });

  it("a refusal before execution (403, 404, 400) stores nothing: the same key then runs a corrected request", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    await call("POST", `/api/v1/users/${alice.id}/block`, { token: bob.token });
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "fix-me" }), 403, "recipient_blocked");
    expectError(
      await transfer(alice.token, { recipientId: "64d15f9e2e6c8f4d5a000000", amount: 5 }, { key: "fix-me" }),
      404,
      "user_not_found",
    );
    expectError(await transfer(alice.token, { recipientId: alice.id, amount: 5 }, { key: "fix-me" }), 400, "validation_failed");
    expect(await keyRows(alice.id, "fix-me")).toEqual([]);
    const fixed = await transfer(alice.token, { recipientId: carol.id, amount: 5 }, { key: "fix-me" });
    expect(fixed.status).toBe(201);
    expect(await keyRows(alice.id, "fix-me")).toHaveLength(1);
  });

  it("a 202 pending after the debit keeps the key: the same body finishes that transfer, another body is 409", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.armFault("after_debit"));
    const pending = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "debited" });
    expect(pending.status).toBe(202);
    expect(pending.json.data.status).toBe("pending");
    expectError(
      await transfer(alice.token, { recipientId: bob.id, amount: 26 }, { key: "debited" }),
      409,
      "idempotency_key_reused",
    );
    const same = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "debited" });
    expect(same.status).toBe(201);
    expect(same.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await balanceOf(bob.id)).toBe(125);
  });
});

describe("debit, then credit, then message", () => {
  for (const point of FAULT_POINTS) {
    it(`stopped ${point}: the recipient sees no transfer message for credits not in their balance, before or after recovery`, async () => {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      await inWallet(alice.id, (wallet) => wallet.armFault(point));
      await transfer(alice.token, { recipientId: bob.id, amount: 25 });
      const [row] = await rowsOf(alice.id, "SELECT transfer_id FROM transfers_out");
      const transferId = String(row!.transfer_id);
      const seen = async () => {
        const messages = await messagesOf(transferId);
        const balance = await balanceOf(bob.id);
        const chats = await call("GET", "/api/v1/chats", { token: bob.token });
        const visible = chats.json.data.items.some(
          (chat: { lastMessage: { id: string } | null }) => chat.lastMessage?.id === transferId,
        );
        if (messages.length > 0 || visible) expect(balance).toBe(125);
        return { messages: messages.length, balance };
      };
      const stopped = await seen();
      expect(stopped.messages === 0 || stopped.balance === 125).toBe(true);
      await runRecovery(alice.id);
      expect(await seen()).toEqual({ messages: 1, balance: 125 });
      const [message] = await messagesOf(transferId);
      // The message's id is the transfer's: the credit named it before the message existed.
      expect(message!.id).toBe(transferId);
      const [credit] = await rowsOf(bob.id, "SELECT message_id FROM entries WHERE kind = 'transfer_in'");
      expect(credit!.message_id).toBe(transferId);
    });
  }
});

describe("every transfer ends", () => {
  it("a recipient whose credit fails past the deadline: one voided transfer, balance restored, no message, the sender told, replays and reads say voided, a late credit refused", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const aliceSocket = await connectAs(alice.token);
    try {
      await inWallet(bob.id, (wallet) => wallet.failCredits(1000));
      const body = { recipientId: bob.id, amount: 25 };
      const answered = await transfer(alice.token, body, { key: "doomed" });
      expect(answered.status).toBe(202);
      const [pending] = await rowsOf(alice.id, "SELECT * FROM transfers_out");
      expect(answered.json.data).toMatchObject({ transferId: pending!.transfer_id, status: "pending" });
      const transferId = String(pending!.transfer_id);
      expect(pending!.state).toBe("pending");
      // Still within its deadline: recovery keeps trying, and it stays pending.
      await runRecovery(alice.id);
      expect((await rowsOf(alice.id, "SELECT state FROM transfers_out"))[0]!.state).toBe("pending");
      const read = await call("GET", `/api/v1/wallets/me/transfers/${transferId}`, { token: alice.token });
      expect(read.json.data).toMatchObject({ status: "pending", recipientBalance: null, messageId: null, chatId: null });

      // Past the deadline: the next recovery voids it (twice fired: still once).
      await inWallet(alice.id, (wallet) => wallet.advanceClock(VOID_AFTER_MS));
      await runRecovery(alice.id, MAX_RETRY_DELAY_MS + 1);
      await runRecovery(alice.id, MAX_RETRY_DELAY_MS + 1);

      expect(await rowsOf(alice.id, "SELECT state FROM transfers_out")).toEqual([{ state: "voided" }]);
      expect(await balanceOf(alice.id)).toBe(100);
      expect(await balanceOf(bob.id)).toBe(100);
      expect(await messagesOf(transferId)).toEqual([]);
      expect(await rowsOf(alice.id, "SELECT kind, amount, balance_after, note FROM entries WHERE kind = 'reversal_in'")).toEqual([
        { kind: "reversal_in", amount: 25, balance_after: 100, note: VOID_NOTE },
      ]);
      expect(await rowsOf(bob.id, "SELECT transfer_id FROM voided_in")).toEqual([{ transfer_id: transferId }]);
      // The void no longer counts against the rolling send limit.
      expect((await call("GET", "/api/v1/wallets/me/limits", { token: alice.token })).json.data.windowUsed).toBe(0);

      const frames = await aliceSocket.take(2);
      expect(frames.map((frame) => frame.type)).toEqual(["transfer.voided", "wallet.updated"]);
      expect(frames[0].data).toMatchObject({ transferId, status: "voided", recipientBalance: null });
      expect(frames[1].data).toMatchObject({ userId: alice.id, balance: 100 });

      const replay = expectError(await transfer(alice.token, body, { key: "doomed" }), 409, "transfer_voided");
      expect(replay.errors[1]).toContain(transferId);
      const again = await transfer(alice.token, body, { key: "doomed" });
      expect(again.headers.get("Idempotent-Replayed")).toBe("true");
      for (const who of [alice, bob]) {
        const res = await call("GET", `/api/v1/wallets/me/transfers/${transferId}`, { token: who.token });
        expect(res.json.data).toMatchObject({ transferId, status: "voided", transferredAmount: 25, messageId: null });
      }

      // A credit arriving after the void is refused forever.
      await inWallet(bob.id, (wallet) => wallet.failCredits(0));
      const late = await walletStub(env, bob.id).credit(await creditCommandFor(alice.id, transferId));
      expect(late.credited).toBe(false);
      expect(await balanceOf(bob.id)).toBe(100);
      await aliceSocket.expectSilence(100);
    } finally {
      aliceSocket.close();
    }
  });

  it("a credited transfer is never voided: past its deadline it still posts, with its message", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => wallet.armFault("after_credit"));
    await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "credited" });
    await inWallet(alice.id, (wallet) => wallet.advanceClock(VOID_AFTER_MS));
    await runRecovery(alice.id);
    const [row] = await rowsOf(alice.id, "SELECT transfer_id, state FROM transfers_out");
    expect(row!.state).toBe("posted");
    expect(await messagesOf(String(row!.transfer_id))).toHaveLength(1);
    expect(await rowsOf(bob.id, "SELECT * FROM voided_in")).toEqual([]);
    expect(await balanceOf(bob.id)).toBe(125);
  });

  it("a void racing a slow credit ends in exactly one of the two, in 100 randomized interleavings", async () => {
    const outcomes = { posted: 0, voided: 0 };
    for (let round = 0; round < 100; round++) {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      await inWallet(alice.id, (wallet) => wallet.armFault("after_debit"));
      await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: `race-${round}` });
      const [row] = await rowsOf(alice.id, "SELECT transfer_id FROM transfers_out");
      const transferId = String(row!.transfer_id);
      const command = await creditCommandFor(alice.id, transferId);
      await inWallet(alice.id, (wallet) => wallet.advanceClock(VOID_AFTER_MS));
      // Random start offsets, with a head start of 0–15 ms for the credit in odd rounds and for
      // the void's side in even ones, so that both orders really happen on a fast or a slow machine.
      const jitter = (headStart: boolean) =>
        sleep(Math.floor(Math.random() * 4) + (headStart ? 0 : Math.floor(Math.random() * 16)));
      const creditFirst = round % 2 === 1;
      const racers: Promise<unknown>[] = [
        // The slow credit, straight to the recipient, as a finisher that started before the deadline would send it.
        jitter(creditFirst).then(async () => ({ credited: (await walletStub(env, bob.id).credit(command)).credited })),
        // The sender's recovery, now past the deadline: it asks the recipient to void.
        jitter(!creditFirst).then(() => runRecovery(alice.id)),
        // A retry of the same key, racing both.
        jitter(!creditFirst).then(() => transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: `race-${round}` })),
      ];
      const [credit] = (await Promise.all(racers)) as [{ credited: boolean }, ...unknown[]];
      while ((await rowsOf(alice.id, "SELECT 1 FROM transfers_out WHERE state = 'pending'")).length > 0) {
        await runRecovery(alice.id);
      }
      const [end] = await rowsOf(alice.id, "SELECT state FROM transfers_out");
      const credited = await rowsOf(bob.id, "SELECT 1 FROM transfers_in");
      const voided = await rowsOf(bob.id, "SELECT 1 FROM voided_in");
      const reversals = await rowsOf(alice.id, "SELECT 1 FROM entries WHERE kind = 'reversal_in'");
      const messages = await messagesOf(transferId);
      if (end!.state === "posted") {
        outcomes.posted += 1;
        expect([credited.length, voided.length, reversals.length, messages.length]).toEqual([1, 0, 0, 1]);
        expect([await balanceOf(alice.id), await balanceOf(bob.id)]).toEqual([75, 125]);
      } else {
        outcomes.voided += 1;
        expect(end!.state).toBe("voided");
        expect([credited.length, voided.length, reversals.length, messages.length]).toEqual([0, 1, 1, 0]);
        expect([await balanceOf(alice.id), await balanceOf(bob.id)]).toEqual([100, 100]);
        expect(credit.credited).toBe(false);
      }
    }
    // Both endings happen: the race is real.
    expect(outcomes.posted).toBeGreaterThan(0);
    expect(outcomes.voided).toBeGreaterThan(0);
  }, 120_000);
});
