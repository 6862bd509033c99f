import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { FAULT_POINTS, type FaultPoint } from "../../src/durable-objects/wallet/wallet-types";
import { queryEveryChat } from "../support/chats";
import { call, expectError } from "../support/http";
import { armFault, balanceOf, inWallet, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

async function messagesOf(transferId: string) {
  return (await queryEveryChat("SELECT id FROM messages WHERE transfer_id = ?", transferId)).map(({ id }) => ({ id }));
}

/** The books of one pair after one transfer of 25 that must have happened exactly once. */
async function expectExactlyOnce(senderId: string, recipientId: string) {
  const [out] = await rowsOf(senderId, "SELECT * FROM transfers_out");
  expect(out).toMatchObject({ state: "posted", amount: 25, sender_balance: 75, recipient_balance: 125 });
  expect(await balanceOf(senderId)).toBe(75);
  expect(await balanceOf(recipientId)).toBe(125);
  expect(await rowsOf(senderId, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_out'")).toEqual([{ n: 1 }]);
  expect(await rowsOf(recipientId, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_in'")).toEqual([{ n: 1 }]);
  const messages = await messagesOf(String(out!.transfer_id));
  expect(messages).toEqual([{ id: out!.message_id }]);
  const [credit] = await rowsOf(recipientId, "SELECT message_id FROM entries WHERE kind = 'transfer_in'");
  expect(credit!.message_id).toBe(out!.message_id);
  return out!;
}

/** Where a stopped transfer stands, per fault point: what has happened before the stop. */
const progress: Record<FaultPoint, { message: boolean; credit: boolean; posted: boolean }> = {
  after_debit: { message: false, credit: false, posted: false },
  after_credit: { message: false, credit: true, posted: false },
  after_message: { message: true, credit: true, posted: false },
  after_posted: { message: true, credit: true, posted: true },
};

/**
 * What a request stopped after `point` answers, as production answers a failure there: after the
 * debit and before the end, 202 with the transfer `pending` (it ends by itself); after `posted`,
 * the answer itself is what was lost: 500, the key kept for the retry.
 */
function expectStopped(res: Awaited<ReturnType<typeof transfer>>, point: FaultPoint) {
  if (point === "after_posted") {
    expectError(res, 500, "internal_error");
    return;
  }
  expect(res.status).toBe(202);
  expect(res.json).toMatchObject({ isSuccess: true, statusCode: 202, data: { status: "pending", transferredAmount: 25 } });
  expect(res.json.data).toMatchObject({ recipientBalance: null, messageId: null, chatId: null });
}

describe("the transfer protocol survives a stop after each step", () => {
  it("the switch exists only in the test harness: the product's wallet class has none", async () => {
    const { WalletDO } = await import("../../src/index");
    expect("armFault" in WalletDO.prototype).toBe(false);
    expect("advanceClock" in WalletDO.prototype).toBe(false);
    expect(await inWallet((await seedWalletUser()).id, (wallet) => typeof wallet.armFault)).toBe("function");
  });

  for (const point of FAULT_POINTS) {
    it(`${point}: the request answers 202 pending (500 once posted: the answer was lost), the books show exactly the steps done, and the alarm (fired twice) finishes it once`, async () => {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      await armFault(alice.id, point);
      expectStopped(await transfer(alice.token, { recipientId: bob.id, amount: 25 }), point);

      const [out] = await rowsOf(alice.id, "SELECT * FROM transfers_out");
      expect(out!.state).toBe(progress[point].posted ? "posted" : "pending");
      expect(await balanceOf(alice.id)).toBe(75);
      expect(await balanceOf(bob.id)).toBe(progress[point].credit ? 125 : 100);
      expect(await messagesOf(String(out!.transfer_id))).toHaveLength(progress[point].message ? 1 : 0);

      expect(await runRecovery(alice.id)).toBe(true);
      await runRecovery(alice.id);
      await expectExactlyOnce(alice.id, bob.id);
    });

    it(`${point}: a retry with the same key finishes the same transfer and answers it`, async () => {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      await armFault(alice.id, point);
      expectStopped(await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: `retry-${point}` }), point);
      const retry = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: `retry-${point}` });
      expect(retry.status).toBe(201);
      expect(retry.headers.get("Idempotent-Replayed")).toBe("true");
      const out = await expectExactlyOnce(alice.id, bob.id);
      expect(retry.json.data).toMatchObject({
        transferId: out.transfer_id,
        senderBalance: 75,
        recipientBalance: 125,
        messageId: out.message_id,
      });
      // And the alarm afterwards changes nothing.
      await runRecovery(alice.id);
      await expectExactlyOnce(alice.id, bob.id);
    });
  }

  for (const point of FAULT_POINTS) {
    it(`${point}: the sender's object crashes there (memory lost, storage kept); alarm and retry end with exactly one transfer`, async () => {
      const alice = await seedWalletUser();
      const bob = await seedWalletUser();
      const body = { recipientId: bob.id, amount: 25 };
      await armFault(alice.id, point, 1, "crash");
      expectError(await transfer(alice.token, body, { key: `crash-${point}` }), 500, "internal_error");
      if (point === "after_debit") {
        // Reset in the same turn as the debit: its write was never confirmed, so all of it is gone
        // (never half of it) and the caller, who got a 500, retries.
        expect(await rowsOf(alice.id, "SELECT * FROM transfers_out")).toEqual([]);
        expect(await balanceOf(alice.id)).toBe(100);
      }
      // The restarted object reads its alarm back from storage and finishes any pending work.
      await runRecovery(alice.id);
      await runRecovery(alice.id);
      const retry = await transfer(alice.token, body, { key: `crash-${point}` });
      expect(retry.status).toBe(201);
      const out = await expectExactlyOnce(alice.id, bob.id);
      expect(retry.json.data.transferId).toBe(out.transfer_id);
      // And it still serves: the next transfer goes through normally.
      expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 })).json.data.senderBalance).toBe(70);
    });
  }

  it("a client that timed out asks GET /wallets/me/transfers/{id}: a pending transfer is finished and shown", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await armFault(alice.id, "after_debit");
    await transfer(alice.token, { recipientId: bob.id, amount: 25 });
    const [out] = await rowsOf(alice.id, "SELECT transfer_id FROM transfers_out");
    // The recipient does not see it before it is credited.
    expectError(
      await call("GET", `/api/v1/wallets/me/transfers/${out!.transfer_id}`, { token: bob.token }),
      404,
      "transfer_not_found",
    );
    const res = await call("GET", `/api/v1/wallets/me/transfers/${out!.transfer_id}`, { token: alice.token });
    expect(res.status).toBe(200);
    expect(res.json.data).toMatchObject({ transferredAmount: 25, senderBalance: 75, recipientBalance: 125, status: "posted" });
    await expectExactlyOnce(alice.id, bob.id);
  });

  it("a fault in every step of several transfers, alarms racing retries: still exactly once each", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await inWallet(alice.id, (wallet) => {
      for (const point of FAULT_POINTS) wallet.armFault(point, 2);
    });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: `m-${i}` })),
    );
    // Each stopped after its debit, before its end: 202 pending (none got as far as after_posted).
    expect(results.filter((r) => r.status === 202).length).toBeGreaterThan(0);
    expect(results.every((r) => r.status === 201 || r.status === 202)).toBe(true);
    await Promise.all([
      runRecovery(alice.id),
      ...Array.from({ length: 6 }, (_, i) => transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: `m-${i}` })),
    ]);
    while ((await rowsOf(alice.id, "SELECT * FROM transfers_out WHERE state = 'pending'")).length > 0)
      await runRecovery(alice.id);
    expect(await balanceOf(alice.id)).toBe(70);
    expect(await balanceOf(bob.id)).toBe(130);
    expect(await rowsOf(alice.id, "SELECT COUNT(*) AS n FROM transfers_out WHERE state = 'posted'")).toEqual([{ n: 6 }]);
    expect(await rowsOf(bob.id, "SELECT COUNT(*) AS n FROM entries WHERE kind = 'transfer_in'")).toEqual([{ n: 6 }]);
    expect(await queryEveryChat("SELECT id FROM messages WHERE sender_id = ?", alice.id)).toHaveLength(6);
  });
});
