import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { creditCommandOf } from "../../src/durable-objects/wallet/finisher";
import type { TransferOutRow } from "../../src/durable-objects/wallet/wallet-schema";
import { CALL_TIMEOUT_MS, MAX_RETRY_DELAY_MS } from "../../src/durable-objects/wallet/wallet-types";
import { directChatIdOf } from "../../src/lib/direct-chat";
import { IDEMPOTENCY_RETENTION_MS } from "../../src/lib/idempotency";
import { walletStub } from "../../src/services/wallets";
import { queryChat, queryEveryChat } from "../support/chats";
import { withTriggers } from "../support/d1-triggers";
import { call, expectError } from "../support/http";
import { withFailingTransferAppends } from "../support/test-chat";
import { balanceOf, inWallet, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

/** Issue 22's endings: answers after the debit, hung recipients, poison transfers, voids without D1, an idle alarm. */

const VOID_AFTER_MS = 3600 * 1000;

const messagesOf = async (transferId: string) =>
  (await queryEveryChat("SELECT id FROM messages WHERE transfer_id = ?", transferId)).map(({ id }) => ({ id }));

/** The tables of the pair's chat object: none while no chat was ever created there. */
const directChats = async (a: string, b: string) =>
  queryChat(await directChatIdOf(a, b), "SELECT name FROM sqlite_master WHERE type = 'table'");

describe("a hung recipient delays only its own transfers", () => {
  it("the sender's other transfers post while one recipient never answers; that one answers 202 after the timeout and recovery ends it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    await inWallet(bob.id, (wallet) => wallet.hangCredits(1));
    const started = Date.now();
    const toBob = transfer(alice.token, { recipientId: bob.id, amount: 7 }, { key: "hung" }).then((res) => ({
      res,
      at: Date.now() - started,
    }));
    // Give the hung one a head start so it is in flight (or in the same group) before the others.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const toCarol = await Promise.all(
      [1, 2, 3].map((amount) =>
        transfer(alice.token, { recipientId: carol.id, amount }).then((res) => ({ res, at: Date.now() - started })),
      ),
    );
    for (const { res, at } of toCarol) {
      expect(res.status).toBe(201);
      expect(at).toBeLessThan(CALL_TIMEOUT_MS);
    }
    const hung = await toBob;
    expect(hung.res.status).toBe(202);
    expect(hung.res.json.data).toMatchObject({ status: "pending", transferredAmount: 7 });
    expect(hung.at).toBeGreaterThanOrEqual(CALL_TIMEOUT_MS - 100);
    expect(await balanceOf(carol.id)).toBe(106);

    expect(await runRecovery(alice.id)).toBe(true);
    expect(await balanceOf(bob.id)).toBe(107);
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 7 }, { key: "hung" });
    expect(replay.status).toBe(201);
    expect(replay.json.data).toMatchObject({ status: "posted", recipientBalance: 107 });
  }, 30_000);
});

describe("one poison transfer never fails the others", () => {
  it("a group whose message wave fails for one transfer posts the others one by one; the poison one stays pending (202) and ends once its chat takes it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    const answers = await withFailingTransferAppends(
      (transfer) => transfer.amount === 13,
      async () => {
        await inWallet(alice.id, (wallet) => wallet.holdGroups());
        const pending = [
          transfer(alice.token, { recipientId: bob.id, amount: 5 }),
          transfer(alice.token, { recipientId: carol.id, amount: 13 }, { key: "poison" }),
          transfer(alice.token, { recipientId: bob.id, amount: 6 }),
          transfer(alice.token, { recipientId: carol.id, amount: 7 }),
        ];
        while ((await inWallet(alice.id, (wallet) => wallet.waitingCount())) < pending.length) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await inWallet(alice.id, (wallet) => wallet.releaseGroups());
        return Promise.all(pending);
      },
    );
    expect(answers.map((res) => res.status)).toEqual([201, 202, 201, 201]);
    expect(await inWallet(alice.id, (wallet) => wallet.groupSizes)).toEqual([4]);
    const poison = answers[1]!.json.data.transferId as string;
    expect(await messagesOf(poison)).toEqual([]);
    // Credited (the credit came before the message), so it is never voided: recovery posts it.
    expect(await balanceOf(carol.id)).toBe(120);
    expect(await runRecovery(alice.id)).toBe(true);
    expect(await messagesOf(poison)).toHaveLength(1);
    expect(await rowsOf(alice.id, "SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'posted'")).toEqual([{ n: 4 }]);
  });
});

describe("a void needs no D1", () => {
  it("a first transfer whose credit never happens is voided while D1 refuses every chat and message write, and leaves no chat", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(bob.id, (wallet) => wallet.failCredits(1000));
    const answered = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "void-offline" });
    expect(answered.status).toBe(202);
    await withTriggers(
      {
        no_chats: "BEFORE INSERT ON chats BEGIN SELECT RAISE(ABORT, 'D1 down'); END",
        no_members: "BEFORE INSERT ON chat_members BEGIN SELECT RAISE(ABORT, 'D1 down'); END",
      },
      async () => {
        await inWallet(alice.id, (wallet) => wallet.advanceClock(VOID_AFTER_MS));
        await runRecovery(alice.id, MAX_RETRY_DELAY_MS + 1);
      },
    );
    expect(await rowsOf(alice.id, "SELECT state FROM transfers_out")).toEqual([{ state: "voided" }]);
    expect(await balanceOf(alice.id)).toBe(100);
    expect(await directChats(alice.id, bob.id)).toEqual([]);
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "void-offline" });
    expectError(replay, 409, "transfer_voided");
  });

  it("a first transfer's credit lands before its chat exists; the recipient's lookup names the chat once it is posted", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const sent = await transfer(alice.token, { recipientId: bob.id, amount: 4 });
    expect(sent.status).toBe(201);
    const [credit] = await rowsOf(bob.id, "SELECT chat_id FROM transfers_in");
    expect(credit!.chat_id).toBeNull();
    const seen = await call("GET", `/api/v1/wallets/me/transfers/${sent.json.data.transferId}`, { token: bob.token });
    expect(seen.json.data).toMatchObject({ status: "posted", chatId: sent.json.data.chatId });
  });
});

describe("the alarm is idle between due times", () => {
  it("a keyed transfer pending past the key retention does not keep the alarm firing: it is set for the transfer's next turn", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(bob.id, (wallet) => wallet.failCredits(1_000_000));
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 9 }, { key: "long-pending" })).status).toBe(202);
    // 25 hours on (as if every void attempt had failed too): past the key's retention, still pending.
    await inWallet(alice.id, (wallet) => wallet.advanceClock(IDEMPOTENCY_RETENTION_MS + 3600_000));
    await runInDurableObject(walletStub(env, bob.id), (_instance, state) => {
      // The recipient cannot even record a void: the transfer stays pending through this run.
      state.storage.sql.exec("CREATE TRIGGER no_void BEFORE INSERT ON voided_in BEGIN SELECT RAISE(ABORT, 'down'); END");
    });
    for (let run = 0; run < 3; run++) {
      expect(await runDurableObjectAlarm(walletStub(env, alice.id))).toBe(true);
      const alarm = await inWallet(alice.id, (_wallet, state) => state.storage.getAlarm());
      const [row] = (await rowsOf(alice.id, "SELECT * FROM transfers_out")) as unknown as TransferOutRow[];
      expect(row!.state).toBe("pending");
      expect(row!.idempotency_key).toBe("long-pending");
      // Set for the transfer's own next turn (its back-off), not for "now" by a key that cannot expire.
      expect(alarm).toBe(row!.retry_at);
      // Only the first run found it due; a run before its turn (fired early here) does nothing.
      expect(row!.attempts).toBe(1);
    }
  });

  it("refuses a TRANSFER_VOID_AFTER_SECONDS at or above the key retention (every transfer must end while its key is kept)", async () => {
    const res = await call("GET", "/health", { vars: { TRANSFER_VOID_AFTER_SECONDS: String(IDEMPOTENCY_RETENTION_MS / 1000) } });
    expectError(res, 500, "internal_error");
    const ok = await call("GET", "/health", {
      vars: { TRANSFER_VOID_AFTER_SECONDS: String(IDEMPOTENCY_RETENTION_MS / 1000 - 1) },
    });
    expect(ok.status).toBe(200);
  });
});

describe("a hot recipient's credits commit together", () => {
  it("credits that arrive while a batch is being made durable commit in one transaction, each idempotent and refused on its own", async () => {
    const recipient = await seedWalletUser();
    const senders = await Promise.all(Array.from({ length: 12 }, () => seedWalletUser()));
    // Real pending transfers, stopped after their debit, so each credit command is genuine.
    for (const sender of senders) await inWallet(sender.id, (wallet) => wallet.armFault("after_debit"));
    await Promise.all(senders.map((s) => transfer(s.token, { recipientId: recipient.id, amount: 10 })));
    const commands = await Promise.all(
      senders.map(async (s) => {
        const [row] = (await rowsOf(s.id, "SELECT * FROM transfers_out")) as unknown as TransferOutRow[];
        return creditCommandOf(row!, s.id, 100);
      }),
    );
    const stub = walletStub(env, recipient.id);
    // One of them voided first: its credit must be refused even inside a batch.
    expect(await stub.voidUnlessCredited(commands[3]!)).toMatchObject({ credited: false });
    // All at once, plus a replay of the first inside the same burst.
    const results = await Promise.all([...commands, commands[0]!].map((command) => stub.credit(command)));
    expect(results[3]).toMatchObject({ credited: false });
    const credited = results.filter((r) => r.credited);
    expect(credited).toHaveLength(12);
    expect(results[12]).toEqual(results[0]);
    expect(await balanceOf(recipient.id)).toBe(100 + 11 * 10);
    const sizes = await inWallet(recipient.id, (wallet) => wallet.creditBatchSizes);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(13);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(await rowsOf(recipient.id, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_in'")).toEqual([{ n: 11 }]);
  });
});
