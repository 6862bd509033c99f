import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { walletStub } from "../../src/services/wallets";
import { call, expectError } from "../support/http";
import { setBlocked } from "../support/users";
import { balanceOf, NO_RATE_LIMIT, rowsOf, runRecovery, seedWalletUser, transfer } from "../support/wallets";

describe("Idempotency-Key on credit transfers", () => {
  it("same key + same body: the original 201, byte for byte, with Idempotent-Replayed; credits move once", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const first = await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "k-1" });
    expect(first.status).toBe(201);
    // `note` omitted and `note: null` are the same request.
    const again = await transfer(alice.token, { amount: 25, recipientId: bob.id, note: null }, { key: "k-1" });
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await balanceOf(alice.id)).toBe(75);
    expect(await balanceOf(bob.id)).toBe(125);
  });

  it("same key + another body: 409 idempotency_key_reused, nothing moves", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    await transfer(alice.token, { recipientId: bob.id, amount: 25 }, { key: "k-2" });
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 26 }, { key: "k-2" }), 409, "idempotency_key_reused");
    expectError(
      await transfer(alice.token, { recipientId: carol.id, amount: 25 }, { key: "k-2" }),
      409,
      "idempotency_key_reused",
    );
    expectError(
      await transfer(alice.token, { recipientId: bob.id, amount: 25, note: "hi" }, { key: "k-2" }),
      409,
      "idempotency_key_reused",
    );
    expect(await balanceOf(alice.id)).toBe(75);
    expect(await balanceOf(carol.id)).toBe(100);
  });

  it("keys are scoped to the caller: another user's same key is a new transfer", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "shared" })).status).toBe(201);
    const res = await transfer(bob.token, { recipientId: alice.id, amount: 5 }, { key: "shared" });
    expect(res.status).toBe(201);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("a business refusal (409 insufficient_balance) is stored and replayed even after the balance grows", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const refused = await transfer(alice.token, { recipientId: bob.id, amount: 150 }, { key: "k-3" });
    expectError(refused, 409, "insufficient_balance");
    await transfer(bob.token, { recipientId: alice.id, amount: 100 });
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 150 }, { key: "k-3" });
    expect(replay.status).toBe(409);
    expect(replay.text).toBe(refused.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expectError(await transfer(alice.token, { recipientId: bob.id, amount: 149 }, { key: "k-3" }), 409, "idempotency_key_reused");
    // A new key runs.
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 150 }, { key: "k-4" })).status).toBe(201);
  });

  it("transfer_limit_exceeded is stored and replayed too", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const vars = { ...NO_RATE_LIMIT, DAILY_TRANSFER_LIMIT: "10" };
    const refused = await transfer(alice.token, { recipientId: bob.id, amount: 11 }, { key: "lim", vars });
    expectError(refused, 409, "transfer_limit_exceeded");
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 11 }, { key: "lim" });
    expect(replay.text).toBe(refused.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it("refusals before execution (400, 403, 404, 429) store nothing: a corrected retry with the same key runs", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const body = { recipientId: bob.id, amount: 5 };
    const oneAMinute = { RATE_LIMIT_TRANSFERS_PER_MINUTE: "1" };
    expect((await transfer(alice.token, { ...body, amount: 1 }, { vars: oneAMinute })).status).toBe(201);
    expectError(await transfer(alice.token, body, { key: "k-5", vars: oneAMinute }), 429, "rate_limited");
    expectError(await transfer(alice.token, { ...body, amount: 0 }, { key: "k-5" }), 400, "validation_failed");
    expectError(
      await transfer(alice.token, { ...body, recipientId: "64d15f9e2e6c8f4d5a000001" }, { key: "k-5" }),
      404,
      "user_not_found",
    );
    await setBlocked(bob.id, alice.id, true);
    expectError(await transfer(alice.token, body, { key: "k-5" }), 403, "recipient_blocked");
    await setBlocked(bob.id, alice.id, false);
    const ran = await transfer(alice.token, body, { key: "k-5" });
    expect(ran.status).toBe(201);
    expect(ran.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await balanceOf(alice.id)).toBe(94);
  });

  it("validates the header: 1..255 printable ASCII, else 400", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    for (const key of ["", "x".repeat(256), "tab\there", "caf\u00e9"]) {
      const err = expectError(await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key }), 400, "validation_failed");
      expect(err.errors[1]).toContain("Idempotency-Key");
    }
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "x".repeat(255) })).status).toBe(201);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: " ~!" })).status).toBe(201);
    expect(await balanceOf(alice.id)).toBe(90);
  });

  it("without a key every request is a new transfer", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const a = await transfer(alice.token, { recipientId: bob.id, amount: 5 });
    const b = await transfer(alice.token, { recipientId: bob.id, amount: 5 });
    expect(a.json.data.transferId).not.toBe(b.json.data.transferId);
    expect(await balanceOf(alice.id)).toBe(90);
  });

  it("keys are kept 24 h, then the alarm forgets them (the transfer itself stays)", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const first = await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "old" });
    await transfer(alice.token, { recipientId: bob.id, amount: 500 }, { key: "old-refusal" });
    const stub = walletStub(env, alice.id);
    // Within 24 h the alarm keeps them.
    await runRecovery(alice.id);
    expect(
      (await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "old" })).headers.get("Idempotent-Replayed"),
    ).toBe("true");
    // A transfer's key counts from its end (posted), a refusal's from its answer.
    await rowsOf(
      alice.id,
      `UPDATE transfers_out SET created_at = created_at - ${24 * 3600 * 1000 + 10}, posted_at = posted_at - ${24 * 3600 * 1000 + 10}`,
    );
    await rowsOf(alice.id, `UPDATE refusals SET created_at = created_at - ${24 * 3600 * 1000 + 10}`);
    await stub.open(alice.id, 100); // make sure the object is awake so the alarm can be run
    await runRecovery(alice.id);
    // The key goes; the transfer and its stored reply stay (history, GET /wallets/me/transfers/{id}).
    expect(await rowsOf(alice.id, "SELECT idempotency_key, fingerprint FROM transfers_out")).toEqual([
      { idempotency_key: null, fingerprint: null },
    ]);
    expect(await rowsOf(alice.id, "SELECT * FROM refusals")).toEqual([]);
    const reused = await transfer(alice.token, { recipientId: bob.id, amount: 5 }, { key: "old" });
    expect(reused.status).toBe(201);
    expect(reused.json.data.transferId).not.toBe(first.json.data.transferId);
    expect(await balanceOf(alice.id)).toBe(90);
  });
});

describe("Idempotency-Key scopes (API.md §1): transfers, each chat's sends, an admin's grants", () => {
  const sendV2 = (token: string, body: unknown, key: string) =>
    call("POST", "/api/v2/messages", { token, body, headers: { "Idempotency-Key": key }, vars: NO_RATE_LIMIT });

  it("a key used by a transfer is not compared on a message send (another scope): the send runs, the transfer still replays", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const sent = await transfer(alice.token, { recipientId: bob.id, amount: 10 }, { key: "x-1" });
    expect(sent.status).toBe(201);
    const chatId = sent.json.data.chatId;
    const posted = await sendV2(alice.token, { chatId, content: "hi" }, "x-1");
    expect(posted.status).toBe(201);
    expect(posted.headers.get("Idempotent-Replayed")).toBeNull();
    const list = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: alice.token });
    expect(list.json.data.items).toHaveLength(2);
    // The transfer itself still replays, and moved credits once.
    const replay = await transfer(alice.token, { recipientId: bob.id, amount: 10 }, { key: "x-1" });
    expect(replay.status).toBe(201);
    expect(replay.text).toBe(sent.text);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await balanceOf(alice.id)).toBe(90);
  });

  it("a key used by a message send is not compared on a transfer (another scope): the transfer runs once", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const chat = await call("POST", "/api/v1/chats", { token: alice.token, body: { type: "direct", memberId: bob.id } });
    const posted = await sendV2(alice.token, { chatId: chat.json.data.id, content: "hi" }, "x-2");
    expect(posted.status).toBe(201);
    const paid = await transfer(alice.token, { recipientId: bob.id, amount: 10 }, { key: "x-2" });
    expect(paid.status).toBe(201);
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 10 }, { key: "x-2" })).text).toBe(paid.text);
    expect(await balanceOf(alice.id)).toBe(90);
    expect(await rowsOf(alice.id, "SELECT transfer_id FROM transfers_out")).toHaveLength(1);
  });

  it("an admin's grant keys are one scope across the users granted, another scope than the admin's transfers", async () => {
    const admin = await seedWalletUser({ role: "admin" });
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const grant = (userId: string, amount = 5) =>
      call("POST", `/api/v1/admin/wallets/${userId}/grants`, {
        token: admin.token,
        body: { amount, reason: "r" },
        headers: { "Idempotency-Key": "x-3" },
      });
    expect((await grant(alice.id)).status).toBe(201);
    expectError(await grant(alice.id, 6), 409, "idempotency_key_reused");
    // One scope per admin for grants: the key names Alice's grant, so for Bob it is another request.
    expectError(await grant(bob.id), 409, "idempotency_key_reused");
    // Across scopes a key is not compared (API.md §1): the admin's own transfers are another scope,
    // though the admin's object keeps both its transfer keys and its grant-key claims.
    expect((await transfer(admin.token, { recipientId: bob.id, amount: 5 }, { key: "x-3" })).status).toBe(201);
    expect(await balanceOf(bob.id)).toBe(105);
    expect(await balanceOf(admin.id)).toBe(95);
    expect((await grant(alice.id)).headers.get("Idempotent-Replayed")).toBe("true");
    expect(await balanceOf(alice.id)).toBe(105);
  });
});
