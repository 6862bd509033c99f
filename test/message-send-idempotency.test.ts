import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { chats } from "../src/db/schema";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { IDEMPOTENCY_RETENTION_MS } from "../src/lib/idempotency";
import { newId } from "../src/lib/ids";
import { queryChat } from "./support/chats";
import { countingD1 } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { seedUser, setBlocked, setSuspended } from "./support/users";
import { seedWalletUser, transfer } from "./support/wallets";

/**
 * A keyed send (API.md §1) with chats as objects (docs/chats.md, "Keys"): the key's scope is the
 * caller's sends into one chat, so the chat object alone keeps it: it answers a stored outcome
 * before any other check, counts the per-chat limit, and stores the outcome in the transaction
 * that appends the message. One object call, no D1 round trip on the way.
 */
type Seeded = Awaited<ReturnType<typeof seedUser>>;
const db = createDb(env.DB);

async function pairInChat() {
  const a = await seedUser();
  const b = await seedUser();
  const res = await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
  expect([200, 201]).toContain(res.status);
  return { a, b, chatId: res.json.data.id as string };
}

/** The outcome of `key` stored in the chat object. */
const storedIn = (chatId: string, user: Seeded, key: string) =>
  queryChat(chatId, "SELECT status, body, message_id FROM send_keys WHERE user_id = ? AND key = ?", user.id, key);

const send1 = (user: Seeded, body: unknown, headers: Record<string, string>, vars = {}) =>
  call("POST", "/api/v1/messages", { token: user.token, body, headers, vars });
const send2 = (user: Seeded, body: unknown, headers: Record<string, string>, vars = {}) =>
  call("POST", "/api/v2/messages", { token: user.token, body, headers, vars });

const listOf = async (user: Seeded, chatId: string) =>
  (await call("GET", `/api/v1/messages/chat/${chatId}`, { token: user.token })).json.data.items as { id: string }[];

describe("a keyed send on a fresh key", () => {
  it("v2 reads and writes no D1: one call to the chat, the 201 stored there with the message", async () => {
    const { a, chatId } = await pairInChat();
    const { d1, roundTrips } = countingD1(env.DB);
    const body = { chatId, content: "hello" };
    const res = await call("POST", "/api/v2/messages", {
      token: a.token,
      body,
      headers: { "Idempotency-Key": "k1" },
      bindings: { DB: d1 },
    });
    expect(res.status).toBe(201);
    expect(roundTrips).toEqual([]);
    // The sender's own object holds no registry of message keys any more.
    const tables = await runInDurableObject(walletStub(env, a.id), (_wallet, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'message_keys'").toArray(),
    );
    expect(tables).toEqual([]);
    expect(await storedIn(chatId, a, "k1")).toEqual([
      { status: 201, body: res.text, message_id: res.json.data.id, chat_id: chatId },
    ]);
  });

  it("v1 to a pair that has a chat reads no D1 either (its id comes from the pair)", async () => {
    const { a, b } = await pairInChat();
    expect((await send1(a, { recipientId: b.id, content: "first" }, { "Idempotency-Key": "v1-a" })).status).toBe(201);
    const { d1, roundTrips } = countingD1(env.DB);
    const res = await call("POST", "/api/v1/messages", {
      token: a.token,
      body: { recipientId: b.id, content: "second" },
      headers: { "Idempotency-Key": "v1-b" },
      bindings: { DB: d1 },
    });
    expect(res.status).toBe(201);
    expect(roundTrips).toEqual([]);
  });
});

describe("replays", () => {
  it("are the first response byte for byte, also after the message was edited and after it was deleted", async () => {
    const { a, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "edit-then-replay" };
    const body = { chatId, content: "original words", clientMessageId: "c-edit" };
    const first = await send2(a, body, headers);
    expect(first.status).toBe(201);
    const replay = await send2(a, body, headers);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(first.text);
    const messageId = first.json.data.id;
    expect((await call("PATCH", `/api/v1/messages/${messageId}`, { token: a.token, body: { content: "new" } })).status).toBe(200);
    expect((await send2(a, body, headers)).text).toBe(first.text);
    expect((await call("DELETE", `/api/v1/messages/${messageId}`, { token: a.token })).status).toBe(200);
    const afterDelete = await send2(a, body, headers);
    expect(afterDelete.status).toBe(201);
    expect(afterDelete.text).toBe(first.text);
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([messageId]);
  });

  it("concurrent duplicates post one message and all answer its bytes (v1, creating the chat)", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const body = { recipientId: b.id, content: "only once" };
    const results = await Promise.all(Array.from({ length: 8 }, () => send1(a, body, { "Idempotency-Key": "v1-race" })));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(201));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(7);
    expect((await listOf(a, results[0]?.json.data.chatId)).map((m) => m.id)).toEqual([results[0]?.json.data.id]);
  });

  it("a replay is never rate limited and never counted", async () => {
    const { a, chatId } = await pairInChat();
    const vars = { RATE_LIMIT_MESSAGES_PER_MINUTE: "2" };
    const send = (key: string) => send2(a, { chatId, content: "limited" }, { "Idempotency-Key": key }, vars);
    const first = await send("r-1");
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("1");
    for (let i = 0; i < 3; i++) {
      const replay = await send("r-1");
      expect(replay.status).toBe(201);
      expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
      expect(replay.headers.get("X-RateLimit-Remaining")).toBeNull();
      expect(replay.text).toBe(first.text);
    }
    const second = await send("r-2");
    expect(second.headers.get("X-RateLimit-Remaining")).toBe("0");
    expectError(await send("r-3"), 429, "rate_limited");
    expect((await send("r-1")).text).toBe(first.text);
    expect((await send("r-2")).text).toBe(second.text);
    expect(await storedIn(chatId, a, "r-3")).toEqual([]);
  });

  it("answer before the sender's suspension: a stored outcome first, a new key refused and kept nowhere", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "before" };
    const first = await send2(a, body, { "Idempotency-Key": "pre-suspension" });
    await setSuspended(a.id, true);
    const replay = await send2(a, body, { "Idempotency-Key": "pre-suspension" });
    expect(replay.status).toBe(201);
    expect(replay.text).toBe(first.text);
    expectError(await send2(a, body, { "Idempotency-Key": "post-suspension" }), 403, "account_suspended");
    expect(await storedIn(chatId, a, "post-suspension")).toEqual([]);
  });
});

describe("a key's scope: the caller's sends into one chat (API.md §1)", () => {
  it("another body under the key in the same chat is 409 and changes nothing; v1 and v2 share the direct chat's scope", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "taken" };
    const first = await send1(a, { recipientId: b.id, content: "x" }, headers);
    expect(first.status).toBe(201);
    expectError(await send1(a, { recipientId: b.id, content: "y" }, headers), 409, "idempotency_key_reused");
    // v2 into the same chat under the key: the same scope, another request.
    expectError(await send2(a, { chatId: first.json.data.chatId, content: "x" }, headers), 409, "idempotency_key_reused");
    expect(await listOf(a, first.json.data.chatId)).toHaveLength(1);
  });

  it("across scopes a key is not compared: another chat, and a transfer, each run under the same key", async () => {
    const a = await seedWalletUser();
    const b = await seedWalletUser();
    const c = await seedWalletUser();
    const headers = { "Idempotency-Key": "shared-key" };
    const toB = await send1(a, { recipientId: b.id, content: "x" }, headers);
    const toC = await send1(a, { recipientId: c.id, content: "x" }, headers);
    expect([toB.status, toC.status]).toEqual([201, 201]);
    expect(toC.headers.get("Idempotent-Replayed")).toBeNull();
    expect(toC.json.data.chatId).not.toBe(toB.json.data.chatId);
    const paid = await transfer(a.token, { recipientId: b.id, amount: 5 }, { key: "shared-key" });
    expect(paid.status).toBe(201);
    expect((await listOf(a, toB.json.data.chatId)).length).toBe(2);
    expect(
      (await db.select({ id: chats.id }).from(chats).where(eq(chats.id, toC.json.data.chatId))).map((row) => row.id),
    ).toEqual([toC.json.data.chatId]);
  });
});

describe("refusals store nothing", () => {
  it("403, 404 and 400 leave no key anywhere; a corrected retry with the same key runs", async () => {
    const { a, b, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "refused" };
    await setBlocked(b.id, a.id, true);
    expectError(await send2(a, { chatId, content: "x" }, headers), 403, "recipient_blocked");
    await setBlocked(b.id, a.id, false);
    expectError(await send2(a, { chatId: newId(), content: "x" }, headers), 404, "chat_not_found");
    expectError(await send2(a, { chatId, content: "x", replyToMessageId: newId() }, headers), 400, "validation_failed");
    expect(await storedIn(chatId, a, "refused")).toEqual([]);
    expect(await listOf(a, chatId)).toEqual([]);
    const ok = await send2(a, { chatId, content: "x" }, headers);
    expect(ok.status).toBe(201);
    expect(ok.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("a refusal before any chat (v1 to yourself) is 400 whatever the key: it names no chat, so no scope", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "self-check" };
    expect((await send1(a, { recipientId: b.id, content: "hi" }, headers)).status).toBe(201);
    expectError(await send1(a, { recipientId: a.id, content: "hi" }, headers), 400, "validation_failed");
    expectError(await send1(a, { recipientId: a.id, content: "hi" }, { "Idempotency-Key": "self-2" }), 400, "validation_failed");
  });
});

describe("a clientMessageId duplicate and its key", () => {
  it("under a fresh key answers 200, stored for the key's replays", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "dup", clientMessageId: "cm-1" };
    const original = await send2(a, body, { "Idempotency-Key": "cm-a" });
    expect(original.status).toBe(201);
    const dup = await send2(a, body, { "Idempotency-Key": "cm-b" });
    expect(dup.status).toBe(200);
    expect(dup.json.data.id).toBe(original.json.data.id);
    expect(await storedIn(chatId, a, "cm-b")).toMatchObject([{ status: 200, body: dup.text }]);
    const replay = await send2(a, body, { "Idempotency-Key": "cm-b" });
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(dup.text);
  });

  it("concurrent sends under one key with one clientMessageId post one message and all answer its bytes", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "once", clientMessageId: "cm-race" };
    const results = await Promise.all(Array.from({ length: 6 }, () => send2(a, body, { "Idempotency-Key": "cm-race-key" })));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(5);
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([results[0]?.json.data.id]);
  });
});

describe("retention", () => {
  it("a key past retention is free again: a new request under it runs, and its answer is the one stored", async () => {
    const { a, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "a-day-ago" };
    const old = await send2(a, { chatId, content: "yesterday" }, headers);
    expect(old.status).toBe(201);
    const past = Date.now() - IDEMPOTENCY_RETENTION_MS - 1000;
    await queryChat(chatId, "UPDATE send_keys SET created_at = ?", past);
    const fresh = await send2(a, { chatId, content: "today" }, headers);
    expect(fresh.status).toBe(201);
    expect(fresh.headers.get("Idempotent-Replayed")).toBeNull();
    expect(fresh.json.data.content).toBe("today");
    expect(await storedIn(chatId, a, "a-day-ago")).toMatchObject([{ status: 201, body: fresh.text }]);
  });
});
