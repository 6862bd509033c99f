import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { admin, api, assertError, assertOk, assertPosted, registerUser } from "./support/client.ts";

/** Paying inside the conversation, as the product's documentation shows it, over HTTP. */
const balanceOf = async (user: Awaited<ReturnType<typeof registerUser>>) =>
  assertOk(await user.client.GET("/api/v1/wallets/me"), 200).balance;

describe("credit transfers over HTTP", () => {
  it("the seed example: 100/100, 25 sent, 75/125; replayed by Idempotency-Key; looked up; in the ledger and the chat", async () => {
    const sender = await registerUser("Sender");
    const recipient = await registerUser("Recipient");
    assert.equal(await balanceOf(sender), 100);
    assert.equal(await balanceOf(recipient), 100);

    const key = randomUUID();
    const send = () =>
      sender.client.POST("/api/v1/messages/credit-transfer", {
        body: { recipientId: recipient.id, amount: 25 },
        headers: { "Idempotency-Key": key },
      });
    const first = await send();
    const transfer = assertPosted(first);
    assert.equal(first.response.headers.get("Idempotent-Replayed"), null);
    assert.equal(transfer.senderId, sender.id);
    assert.equal(transfer.recipientId, recipient.id);
    assert.equal(transfer.transferredAmount, 25);
    assert.equal(transfer.senderBalance, 75);
    assert.equal(transfer.recipientBalance, 125);
    for (const id of [transfer.transferId, transfer.messageId, transfer.chatId]) assert.match(id, /^[0-9a-f]{24}$/);

    const replay = await send();
    assert.equal(replay.response.headers.get("Idempotent-Replayed"), "true");
    assert.deepEqual(assertPosted(replay), transfer, "the original body again");
    assert.equal(await balanceOf(sender), 75, "a replay moves nothing");
    assert.equal(await balanceOf(recipient), 125);

    const reused = await sender.client.POST("/api/v1/messages/credit-transfer", {
      body: { recipientId: recipient.id, amount: 26 },
      headers: { "Idempotency-Key": key },
    });
    assertError(reused, 409, "idempotency_key_reused");

    // A client that timed out asks whether it went through: sender and recipient may, others may not.
    for (const user of [sender, recipient]) {
      const found = assertOk(
        await user.client.GET("/api/v1/wallets/me/transfers/{transferId}", {
          params: { path: { transferId: transfer.transferId } },
        }),
        200,
      );
      assert.deepEqual(found, transfer);
    }
    const stranger = await registerUser("Stranger");
    assertError(
      await stranger.client.GET("/api/v1/wallets/me/transfers/{transferId}", {
        params: { path: { transferId: transfer.transferId } },
      }),
      404,
      "transfer_not_found",
    );

    const senderLedger = assertOk(
      await sender.client.GET("/api/v1/wallets/me/transactions", { params: { query: { limit: 10 } } }),
      200,
    );
    assert.deepEqual(
      senderLedger.items.map((e) => [e.kind, e.amount, e.balanceAfter]),
      [
        ["transfer_out", -25, 75],
        ["grant", 100, 100],
      ],
    );
    assert.equal(senderLedger.items[0]?.transferId, transfer.transferId);
    assert.equal(senderLedger.items[0]?.counterpartyId, recipient.id);
    assert.equal(senderLedger.nextCursor, null);
    const recipientLedger = assertOk(await recipient.client.GET("/api/v1/wallets/me/transactions"), 200);
    assert.deepEqual(
      recipientLedger.items.map((e) => [e.kind, e.amount, e.balanceAfter]),
      [
        ["transfer_in", 25, 125],
        ["grant", 100, 100],
      ],
    );

    const messages = assertOk(
      await recipient.client.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId: transfer.chatId } } }),
      200,
    );
    assert.equal(messages.items.length, 1, "one message for the transfer, replays included");
    const message = messages.items[0];
    assert.equal(message?.id, transfer.messageId);
    assert.equal(message?.type, "credit_transfer");
    assert.deepEqual(message?.creditTransfer, {
      transferId: transfer.transferId,
      recipientId: recipient.id,
      amount: 25,
      note: null,
    });

    const limits = assertOk(await sender.client.GET("/api/v1/wallets/me/limits"), 200);
    assert.equal(limits.windowUsed, 25);
  });

  it("refusals: 400 for bad amounts and self, 404 user_not_found, 409 insufficient_balance, 403 blocked and suspended", async () => {
    const payer = await registerUser("Payer");
    const payee = await registerUser("Payee");
    const pay = (body: Record<string, unknown>, user = payer) =>
      user.client.POST("/api/v1/messages/credit-transfer", { body: body as { recipientId: string; amount: number } });

    for (const amount of [0, -5, 2.5, "10"]) assertError(await pay({ recipientId: payee.id, amount }), 400, "validation_failed");
    assertError(await pay({ recipientId: payer.id, amount: 1 }), 400, "validation_failed");
    assertError(await pay({ recipientId: "zz", amount: 1 }), 400, "validation_failed");
    assertError(await pay({ recipientId: payee.id, amount: 1, note: "n".repeat(281) }), 400, "validation_failed");
    assertError(await pay({ recipientId: "64d15f9e2e6c8f4d5a000000", amount: 1 }), 404, "user_not_found");
    const broke = assertError(await pay({ recipientId: payee.id, amount: 101 }), 409, "insufficient_balance");
    assert.ok((broke.errors ?? []).length > 1, "says how much is available");
    assertError(
      await api().POST("/api/v1/messages/credit-transfer", { body: { recipientId: payee.id, amount: 1 } }),
      401,
      "authentication_required",
    );

    assertOk(await payee.client.POST("/api/v1/users/{userId}/block", { params: { path: { userId: payer.id } } }), 200);
    assertError(await pay({ recipientId: payee.id, amount: 1 }), 403, "recipient_blocked");

    const adminClient = await admin();
    assertOk(
      await adminClient.POST("/api/v1/admin/users/{userId}/suspension", {
        params: { path: { userId: payer.id } },
        body: { reason: "e2e" },
      }),
      200,
    );
    const third = await registerUser("Third");
    assertError(await pay({ recipientId: third.id, amount: 1 }), 403, "account_suspended");

    assert.equal(await balanceOf(payer), 100, "no refusal moved credits");
    assert.equal(await balanceOf(payee), 100);
  });

  it("admin grants (403 for non-admins) and a reconciliation with no discrepancies", async () => {
    const user = await registerUser("Granted");
    assertError(
      await user.client.POST("/api/v1/admin/wallets/{userId}/grants", {
        params: { path: { userId: user.id } },
        body: { amount: 5, reason: "me" },
      }),
      403,
      "insufficient_permissions",
    );
    const adminClient = await admin();
    const grant = assertOk(
      await adminClient.POST("/api/v1/admin/wallets/{userId}/grants", {
        params: { path: { userId: user.id } },
        body: { amount: 50, reason: "e2e" },
      }),
      201,
    );
    assert.equal(grant.balance, 150);
    // Documented as 200 (the report) or 202 (no report yet: the run); a fresh deployment's first run finishes well within the wait.
    const books = assertOk<{ discrepancies: unknown[]; totalBalance: number | null; totalGranted: number | null }>(
      await adminClient.GET("/api/v1/admin/reconciliation"),
      200,
    );
    assert.deepEqual(books.discrepancies, []);
    assert.equal(books.totalBalance, books.totalGranted);
  });

  it("a lost 201 is answered by its key first: after a block, past the rate limit, after a suspension; a stored 409 replays after a grant", async () => {
    const alice = await registerUser("Alice");
    const bob = await registerUser("Bob");
    const carol = await registerUser("Carol");
    const key = randomUUID();
    const send = (user = alice, body = { recipientId: bob.id, amount: 25 }, idempotencyKey = key) =>
      user.client.POST("/api/v1/messages/credit-transfer", { body, headers: { "Idempotency-Key": idempotencyKey } });
    const first = await send();
    const original = assertPosted(first);
    const expectReplay = async (story: string) => {
      const retry = await send();
      assert.equal(retry.response.status, 201, `${story}: the stored 201`);
      assert.equal(retry.response.headers.get("Idempotent-Replayed"), "true", story);
      assert.deepEqual(assertPosted(retry), original, `${story}: the original body`);
    };

    // Bob blocks Alice: a new request is refused, the retry of the paid one is not.
    assertOk(await bob.client.POST("/api/v1/users/{userId}/block", { params: { path: { userId: alice.id } } }), 200);
    assertError(await send(alice, { recipientId: bob.id, amount: 25 }, randomUUID()), 403, "recipient_blocked");
    await expectReplay("after a block");

    // Alice uses up her transfers for the minute (to Carol); a replay is not a new request.
    let limited = false;
    for (let i = 0; i < 40 && !limited; i++) {
      const res = await send(alice, { recipientId: carol.id, amount: 1 }, randomUUID());
      limited = res.response.status === 429;
      if (limited) {
        assertError(res, 429, "rate_limited");
        assert.match(res.response.headers.get("Retry-After") ?? "", /^\d+$/);
      }
    }
    assert.ok(limited, "the per-minute transfer limit was reached");
    await expectReplay("past the rate limit");

    // An admin suspends Alice.
    const adminClient = await admin();
    assertOk(
      await adminClient.POST("/api/v1/admin/users/{userId}/suspension", {
        params: { path: { userId: alice.id } },
        body: { reason: "e2e replay story" },
      }),
      200,
    );
    await expectReplay("after a suspension");
    assert.equal(await balanceOf(bob), 125, "the money moved once");

    // A stored business refusal replays too, even once the balance would allow it.
    const dave = await registerUser("Dave");
    const refusalKey = randomUUID();
    const big = { recipientId: carol.id, amount: 150 };
    const refused = await send(dave, big, refusalKey);
    assertError(refused, 409, "insufficient_balance");
    assertOk(
      await adminClient.POST("/api/v1/admin/wallets/{userId}/grants", {
        params: { path: { userId: dave.id } },
        body: { amount: 100, reason: "e2e" },
      }),
      201,
    );
    const replayedRefusal = await send(dave, big, refusalKey);
    assertError(replayedRefusal, 409, "insufficient_balance");
    assert.equal(replayedRefusal.response.headers.get("Idempotent-Replayed"), "true");
    assert.deepEqual(replayedRefusal.error, refused.error, "the stored refusal, as it was");
    assert.equal(await balanceOf(dave), 200);
  });

  it("a reconciliation run started by hand runs as a Workflow under wrangler dev and completes clean", async () => {
    const adminClient = await admin();
    const started = await adminClient.POST("/api/v1/admin/reconciliations");
    assert.ok(started.response.status === 202 || started.response.status === 200, `status ${started.response.status}`);
    const runId = started.data!.data.id;
    let run = assertOk(await adminClient.GET("/api/v1/admin/reconciliations/{runId}", { params: { path: { runId } } }), 200);
    for (let i = 0; i < 100 && run.status === "running"; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      run = assertOk(await adminClient.GET("/api/v1/admin/reconciliations/{runId}", { params: { path: { runId } } }), 200);
    }
    assert.equal(run.status, "completed");
    assert.deepEqual(run.discrepancies, []);
    assert.equal(run.totalBalance, run.totalGranted);
    assert.ok(run.walletsChecked >= 2);
  });
});
