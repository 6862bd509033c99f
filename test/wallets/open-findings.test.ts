/**
 * The wallet's open findings of issue 27, each as the story that showed it: a key kept from the
 * end of its transfer, recovery that keeps backing off past a deadline, a hung chat that delays
 * only its own transfers, a recipient's record of batches that stays bounded, and a recipient
 * who is not told "posted" before the message exists.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { BATCH_SIZES_KEPT } from "../../src/durable-objects/wallet/recipient";
import { CALL_TIMEOUT_MS, IN_FLIGHT_MS } from "../../src/durable-objects/wallet/wallet-types";
import { getConfig } from "../../src/lib/config";
import { IDEMPOTENCY_RETENTION_MS } from "../../src/lib/idempotency";
import { newId } from "../../src/lib/ids";
import { call } from "../support/http";
import { chatFaults, withFailingTransferAppends, withHungTransferAppends } from "../support/test-chat";
import { armFault, balanceOf, inWallet, queueOneGroup, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

const HOUR = 3_600_000;
const voidAfterMs = getConfig(env).transferVoidAfterMs;

const transferAs = (token: string, transferId: string) => call("GET", `/api/v1/wallets/me/transfers/${transferId}`, { token });

describe("the wallet's open findings", () => {
  it("a 202 transfer that posts after 25 h, then retried: the original outcome, no second debit", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    // Credited, then its message held: the request answers 202 and the transfer stays pending.
    await armFault(alice.id, "after_credit");
    const body = { recipientId: bob.id, amount: 25 };
    const first = await transfer(alice.token, body, { key: "late-post" });
    expect(first.status).toBe(202);
    expect(await balanceOf(bob.id)).toBe(125);
    // 25 h later recovery posts it; the same alarm run expires the keys past their retention.
    expect(await runRecovery(alice.id, 25 * HOUR)).toBe(true);
    expect(await rowsOf(alice.id, "SELECT state, idempotency_key FROM transfers_out")).toEqual([
      { state: "posted", idempotency_key: "late-post" },
    ]);
    const retry = await transfer(alice.token, body, { key: "late-post" });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotent-Replayed")).toBe("true");
    expect(retry.json.data).toMatchObject({ transferId: first.json.data.transferId, status: "posted" });
    expect(await balanceOf(alice.id)).toBe(75);
    expect(await balanceOf(bob.id)).toBe(125);
    // The key is kept until 24 h after the posting, and goes then.
    expect(await runRecovery(alice.id, IDEMPOTENCY_RETENTION_MS - 60_000)).toBe(true);
    expect(await rowsOf(alice.id, "SELECT idempotency_key FROM transfers_out")).toEqual([{ idempotency_key: "late-post" }]);
    expect(await runRecovery(alice.id, 120_000)).toBe(true);
    expect(await rowsOf(alice.id, "SELECT idempotency_key FROM transfers_out")).toEqual([{ idempotency_key: null }]);
  });

  it("the backoff past the deadline: a credited transfer whose chat refuses its message is retried ever less often", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await withFailingTransferAppends(
      (append) => append.senderId === alice.id,
      async () => {
        const first = await transfer(alice.token, { recipientId: bob.id, amount: 5 });
        expect(first.status).toBe(202);
        // Past the void deadline: the recipient answers "already credited", the message fails again.
        await runRecovery(alice.id, voidAfterMs + IN_FLIGHT_MS);
        const waits: number[] = [];
        for (let run = 0; run < 4; run++) {
          const [row] = await rowsOf(alice.id, "SELECT retry_at, state FROM transfers_out");
          expect(row!.state).toBe("pending");
          const now = await inWallet(alice.id, (wallet) => wallet.clock());
          waits.push(Number(row!.retry_at) - now);
          await runRecovery(alice.id, Number(row!.retry_at) - now + 1);
        }
        // Doubling (10 s, 20 s, 40 s, 80 s), not a poll every IN_FLIGHT_MS for good.
        for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThan(waits[i - 1]! * 1.5);
        expect(waits[3]!).toBeGreaterThanOrEqual(8 * IN_FLIGHT_MS - 1_000);
      },
    );
    // Once the chat takes it, the next run posts it.
    await runRecovery(alice.id, 600_000);
    expect(await rowsOf(alice.id, "SELECT state FROM transfers_out")).toEqual([{ state: "posted" }]);
  });

  it("a hung chat in a wave: transfers to other chats still post promptly", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    const dave = await seedWalletUser();
    await withHungTransferAppends(
      (append) => append.recipientId === bob.id,
      async (release) => {
        // Bob's chat hangs on the message of alice's transfer to him...
        const hungBefore = chatFaults.hung;
        const toBob = transfer(alice.token, { recipientId: bob.id, amount: 4 }, { key: "to-hung-chat" });
        for (let tries = 0; chatFaults.hung === hungBefore; tries++) {
          if (tries > 500) throw new Error("bob's chat was never reached");
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        // ...while her next transfers, one alone and two in one group with another to bob, go to other chats.
        let started = Date.now();
        const toCarol = await transfer(alice.token, { recipientId: carol.id, amount: 6 }, { key: "to-live-chat" });
        expect(toCarol.status).toBe(201);
        expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS / 2);
        const [toBobAgain, toDave] = await queueOneGroup(alice.id, alice.token, [
          { key: "to-hung-chat-again", body: { recipientId: bob.id, amount: 3 } },
          { key: "to-live-chat-2", body: { recipientId: dave.id, amount: 5 } },
        ]);
        started = Date.now();
        expect((await toDave!).status).toBe(201);
        expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS / 2);
        // Bob's chat still holds its messages: those transfers alone wait.
        expect(await rowsOf(alice.id, "SELECT recipient_id, state FROM transfers_out ORDER BY amount")).toEqual([
          { recipient_id: bob.id, state: "pending" },
          { recipient_id: bob.id, state: "pending" },
          { recipient_id: dave.id, state: "posted" },
          { recipient_id: carol.id, state: "posted" },
        ]);
        release();
        expect([(await toBob).status, (await toBobAgain!).status]).toEqual([201, 201]);
      },
    );
    expect(await balanceOf(alice.id)).toBe(82);
  });

  it("a long run keeps Recipient.batchSizes bounded", async () => {
    const bob = await seedWalletUser();
    const senderId = newId();
    const sizes = await inWallet(bob.id, async (wallet) => {
      for (let i = 0; i < BATCH_SIZES_KEPT + 50; i++) {
        const transferId = newId();
        await wallet.credit({
          transferId,
          senderId,
          recipientId: bob.id,
          amount: 1,
          note: null,
          senderBalance: 0,
          messageId: transferId,
          chatId: null,
          createdAt: Date.now(),
          signupCredits: 100,
        });
      }
      return wallet.creditBatchSizes.length;
    });
    expect(sizes).toBe(BATCH_SIZES_KEPT);
    expect(await balanceOf(bob.id)).toBe(100 + BATCH_SIZES_KEPT + 50);
  });

  it("a recipient's view of a credited transfer not yet posted says pending, then posted with its message", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await armFault(alice.id, "after_credit");
    const first = await transfer(alice.token, { recipientId: bob.id, amount: 9 });
    expect(first.status).toBe(202);
    const transferId = first.json.data.transferId;
    const early = await transferAs(bob.token, transferId);
    expect(early.status).toBe(200);
    expect(early.json.data).toMatchObject({
      transferId,
      status: "pending",
      recipientBalance: 109,
      messageId: null,
      chatId: null,
    });
    await runRecovery(alice.id);
    const late = await transferAs(bob.token, transferId);
    expect(late.json.data).toMatchObject({ transferId, status: "posted", recipientBalance: 109, messageId: transferId });
    expect(late.json.data.chatId).toMatch(/^[0-9a-f]{24}$/);
    // The recipient remembers it: it no longer asks the sender.
    expect(await rowsOf(bob.id, "SELECT posted_at IS NOT NULL AS known FROM transfers_in")).toEqual([{ known: 1 }]);
  });
});
