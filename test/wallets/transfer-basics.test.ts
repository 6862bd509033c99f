import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { flushDirectory, queryChat } from "../support/chats";
import { call, expectError } from "../support/http";
import { seedUser, setBlocked } from "../support/users";
import { balanceOf, NO_RATE_LIMIT, rowsOf, seedWalletUser, transfer } from "../support/wallets";

/** Through the blocker's object, the owner of the fact. */
async function block(blockerId: string, blockedId: string) {
  await setBlocked(blockerId, blockedId, true);
}

describe("POST /api/v1/messages/credit-transfer", () => {
  it("the seed example: 100/100 → 25 → 201 with 75/125 and the message in the chat", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const res = await transfer(alice.token, { recipientId: bob.id, amount: 25 });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      isSuccess: true,
      statusCode: 201,
      errors: null,
      data: { senderId: alice.id, recipientId: bob.id, transferredAmount: 25, senderBalance: 75, recipientBalance: 125 },
    });
    const data = res.json.data;
    for (const id of [data.transferId, data.messageId, data.chatId]) expect(id).toMatch(/^[0-9a-f]{24}$/);
    expect(new Date(data.createdAt).toISOString()).toBe(data.createdAt);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await balanceOf(alice.id)).toBe(75);
    expect(await balanceOf(bob.id)).toBe(125);
    const [message] = await queryChat(data.chatId, "SELECT * FROM messages WHERE transfer_id = ?", data.transferId);
    expect(message).toMatchObject({
      id: data.messageId,
      chat_id: data.chatId,
      sender_id: alice.id,
      type: "credit_transfer",
      transfer_recipient_id: bob.id,
      transfer_amount: 25,
    });
    // The directory lists the chat behind the answer (within 1 s): its alarm, now.
    await flushDirectory([data.chatId]);
    const chat = await env.DB.prepare("SELECT type FROM chats WHERE id = ?").bind(data.chatId).first();
    expect(chat).toEqual({ type: "direct" });
    // Both ledgers: the debit and the credit, each with the message id and the balance after.
    expect(
      await rowsOf(alice.id, "SELECT kind, amount, balance_after, counterparty_id, message_id FROM entries ORDER BY seq"),
    ).toEqual([
      { kind: "grant", amount: 100, balance_after: 100, counterparty_id: null, message_id: null },
      { kind: "transfer_out", amount: -25, balance_after: 75, counterparty_id: bob.id, message_id: data.messageId },
    ]);
    expect(
      await rowsOf(bob.id, "SELECT kind, amount, balance_after, counterparty_id, message_id FROM entries ORDER BY seq"),
    ).toEqual([
      { kind: "grant", amount: 100, balance_after: 100, counterparty_id: null, message_id: null },
      { kind: "transfer_in", amount: 25, balance_after: 125, counterparty_id: alice.id, message_id: data.messageId },
    ]);
  });

  it("the message shows in the chat for both people, and a credit_transfer message cannot be edited", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const sent = (await transfer(alice.token, { recipientId: bob.id, amount: 25, note: "lunch" })).json.data;
    for (const viewer of [alice, bob]) {
      const page = await call("GET", `/api/v1/messages/chat/${sent.chatId}`, { token: viewer.token });
      expect(page.status).toBe(200);
      expect(page.json.data.items).toEqual([
        expect.objectContaining({
          id: sent.messageId,
          chatId: sent.chatId,
          senderId: alice.id,
          type: "credit_transfer",
          creditTransfer: { transferId: sent.transferId, recipientId: bob.id, amount: 25, note: "lunch" },
        }),
      ]);
    }
    expectError(
      await call("PATCH", `/api/v1/messages/${sent.messageId}`, { token: alice.token, body: { content: "changed" } }),
      409,
      "message_immutable",
    );
  });

  it("registration opens the wallet with SIGNUP_CREDITS once, as a grant entry", async () => {
    const email = `wallet-${Date.now()}@example.com`;
    const registered = await call("POST", "/api/v1/auth/register", {
      body: { email, password: "correct horse battery", displayName: "Wally" },
    });
    expect(registered.status).toBe(201);
    const token = registered.json.data.accessToken;
    expect((await call("GET", "/api/v1/wallets/me", { token })).json.data.balance).toBe(100);
    const entries = (await call("GET", "/api/v1/wallets/me/transactions", { token })).json.data.items;
    expect(entries).toEqual([expect.objectContaining({ kind: "grant", amount: 100, balanceAfter: 100, counterpartyId: null })]);
    const zero = await call("POST", "/api/v1/auth/register", {
      body: { email: `zero-${email}`, password: "correct horse battery", displayName: "Zero" },
      vars: { SIGNUP_CREDITS: "0" },
    });
    expect((await call("GET", "/api/v1/wallets/me", { token: zero.json.data.accessToken })).json.data.balance).toBe(0);
  });

  it("a second transfer reuses the direct chat and the note travels with it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const first = await transfer(alice.token, { recipientId: bob.id, amount: 1 });
    const second = await transfer(bob.token, { recipientId: alice.id, amount: 2, note: "thanks!" });
    expect(second.status).toBe(201);
    expect(second.json.data.chatId).toBe(first.json.data.chatId);
    const [message] = await queryChat(
      second.json.data.chatId,
      "SELECT transfer_note FROM messages WHERE id = ?",
      second.json.data.messageId,
    );
    expect(message).toMatchObject({ transfer_note: "thanks!" });
  });

  it("accepts note: null as no note", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const res = await transfer(alice.token, { recipientId: bob.id, amount: 3, note: null });
    expect(res.status).toBe(201);
    const [message] = await queryChat(
      res.json.data.chatId,
      "SELECT transfer_note FROM messages WHERE id = ?",
      res.json.data.messageId,
    );
    expect(message).toMatchObject({ transfer_note: null });
  });

  it("opens a wallet on first use: a user whose wallet was never opened has the welcome grant", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const res = await transfer(alice.token, { recipientId: bob.id, amount: 30 });
    expect(res.json.data).toMatchObject({ senderBalance: 70, recipientBalance: 130 });
  });

  it("validates the amount, the recipient and the note (400 with one line per field)", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const cases: [unknown, string][] = [
      [{ recipientId: bob.id, amount: "25" }, "amount:"],
      [{ recipientId: bob.id, amount: 25.5 }, "amount:"],
      [{ recipientId: bob.id, amount: 1e15 }, "amount: must be at most 100000"],
      [{ recipientId: bob.id, amount: 100001 }, "amount: must be at most 100000"],
      [{ recipientId: bob.id, amount: -5 }, "amount:"],
      [{ recipientId: bob.id, amount: 0 }, "amount:"],
      [{ recipientId: bob.id }, "amount:"],
      [{ recipientId: bob.id, amount: null }, "amount:"],
      [{ recipientId: "not-an-id", amount: 5 }, "recipientId:"],
      [{ recipientId: bob.id.toUpperCase(), amount: 5 }, "recipientId:"],
      [{ amount: 5 }, "recipientId:"],
      [{ recipientId: alice.id, amount: 5 }, "recipientId: cannot be yourself"],
      [{ recipientId: bob.id, amount: 5, note: "x".repeat(281) }, "note:"],
      [{ recipientId: bob.id, amount: 5, note: 7 }, "note:"],
    ];
    for (const [body, line] of cases) {
      const err = expectError(await transfer(alice.token, body), 400, "validation_failed");
      expect(err.errors[0]).toBe("Validation failed");
      expect(
        err.errors.slice(1).some((e) => e.startsWith(line)),
        `${JSON.stringify(body)} → ${err.errors.join(" | ")}`,
      ).toBe(true);
    }
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5, note: "x".repeat(280) })).status).toBe(201);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 1 })).status).toBe(201);
    expect(await balanceOf(alice.id)).toBe(94);
  });

  it("honours MAX_TRANSFER_AMOUNT from its var", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const vars = { ...NO_RATE_LIMIT, MAX_TRANSFER_AMOUNT: "10" };
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 11 }, { vars }), 400, "validation_failed");
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 10 }, { vars })).status).toBe(201);
  });

  it("413, 415 and malformed JSON keep the envelope and move nothing", async () => {
    const alice = await seedWalletUser();
    const path = "/api/v1/messages/credit-transfer";
    const json = { "Content-Type": "application/json" };
    expectError(await call("POST", path, { token: alice.token, rawBody: "{oops", headers: json }), 400, "malformed_json");
    expectError(
      await call("POST", path, { token: alice.token, rawBody: "amount=5", headers: { "Content-Type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
    const big = JSON.stringify({ recipientId: alice.id, amount: 5, note: "x".repeat(70 * 1024) });
    expectError(await call("POST", path, { token: alice.token, rawBody: big, headers: json }), 413, "payload_too_large");
    expect(await balanceOf(alice.id)).toBe(100);
  });

  it("401 without or with a bad token", async () => {
    const bob = await seedWalletUser();
    expectError(
      await call("POST", "/api/v1/messages/credit-transfer", { body: { recipientId: bob.id, amount: 1 } }),
      401,
      "authentication_required",
    );
    expectError(await transfer("not.a.jwt", { recipientId: bob.id, amount: 1 }), 401, "invalid_token");
  });

  it("404 user_not_found for an unknown recipient; 403 for a suspended caller and a blocking recipient; nothing moves", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expectError(await transfer(alice.token, { recipientId: "64d15f9e2e6c8f4d5a654321", amount: 5 }), 404, "user_not_found");
    await block(bob.id, alice.id);
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 5 }), 403, "recipient_blocked");
    // Blocking is one-way: the blocker can still pay the person they blocked.
    expect((await transfer(bob.token, { recipientId: alice.id, amount: 5 })).status).toBe(201);
    const suspended = await seedWalletUser({ status: "suspended" });
    expectError(await transfer(suspended.token, { recipientId: alice.id, amount: 5 }), 403, "account_suspended");
    expect(await balanceOf(alice.id)).toBe(105);
    expect(await balanceOf(suspended.id)).toBe(100);
  });

  it("409 insufficient_balance with the amounts; nothing moves", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 90 })).status).toBe(201);
    const err = expectError(await transfer(alice.token, { recipientId: bob.id, amount: 25 }), 409, "insufficient_balance");
    expect(err.errors).toEqual([
      "Resource already exists or cannot be changed in its current state",
      "Insufficient balance: 10 available, 25 requested",
    ]);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 10 })).json.data.senderBalance).toBe(0);
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 1 }), 409, "insufficient_balance");
    expect(await balanceOf(bob.id)).toBe(200);
  });

  it("409 transfer_limit_exceeded over DAILY_TRANSFER_LIMIT in a rolling 24 h; older sends do not count", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const vars = { ...NO_RATE_LIMIT, DAILY_TRANSFER_LIMIT: "50" };
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 30 }, { vars })).status).toBe(201);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 20 }, { vars })).status).toBe(201);
    const err = expectError(
      await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars }),
      409,
      "transfer_limit_exceeded",
    );
    expect(err.errors[1]).toContain("50 of 50");
    const limits = await call("GET", "/api/v1/wallets/me/limits", { token: alice.token, vars });
    expect(limits.json.data).toEqual({
      perTransferMax: 100000,
      windowHours: 24,
      windowLimit: 50,
      windowUsed: 50,
      windowRemaining: 0,
    });
    // Sends are counted per minute. Moved 24 h (1440 minutes) back, they still count: a send
    // counts for 24 h rounded up to the end of its minute, never less.
    await rowsOf(alice.id, "UPDATE sent_by_minute SET minute = minute - 1440");
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars }), 409, "transfer_limit_exceeded");
    // One minute more and they leave the window.
    await rowsOf(alice.id, "UPDATE sent_by_minute SET minute = minute - 1");
    expect((await call("GET", "/api/v1/wallets/me/limits", { token: alice.token, vars })).json.data.windowUsed).toBe(0);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 50 }, { vars })).status).toBe(201);
    expect((await transfer(bob.token, { recipientId: alice.id, amount: 10 }, { vars })).status).toBe(201);
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars }), 409, "transfer_limit_exceeded");
    // Minutes out of the window are forgotten on the next send.
    expect(await rowsOf(alice.id, "SELECT amount FROM sent_by_minute")).toEqual([{ amount: 50 }]);
  });

  it("the window check reads at most one row per minute, however many transfers were sent", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    for (let i = 0; i < 20; i++) await transfer(alice.token, { recipientId: bob.id, amount: 1 });
    const buckets = await rowsOf(alice.id, "SELECT SUM(amount) AS sent, COUNT(*) AS rows FROM sent_by_minute");
    expect(Number(buckets[0]!.sent)).toBe(20);
    expect(Number(buckets[0]!.rows)).toBeLessThanOrEqual(2);
  });

  it("429 rate_limited over RATE_LIMIT_TRANSFERS_PER_MINUTE, with Retry-After", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const vars = { RATE_LIMIT_TRANSFERS_PER_MINUTE: "2" };
    const first = await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars });
    expect(first.status).toBe(201);
    expect(first.headers.get("X-RateLimit-Limit")).toBe("2");
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("1");
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars })).status).toBe(201);
    const limited = await transfer(alice.token, { recipientId: bob.id, amount: 1 }, { vars });
    expectError(limited, 429, "rate_limited");
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(await balanceOf(alice.id)).toBe(98);
  });
});
