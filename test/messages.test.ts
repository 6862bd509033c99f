import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { blocks, idempotencyKeys, users } from "../src/db/schema";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { IDEMPOTENCY_RETENTION_MS, requestFingerprint } from "../src/lib/idempotency";
import { newId } from "../src/lib/ids";
import { messageSchema } from "../src/schemas/message";
import { chatStub } from "../src/services/chat-objects";
import { openWallet } from "../src/services/wallets";
import { call, expectError } from "./support/http";
import { chatFaults } from "./support/test-chat";
import { seedUser, setBlocked, setSuspended } from "./support/users";

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
type Seeded = Awaited<ReturnType<typeof seedUser>>;
const db = createDb(env.DB);

const block = (blocker: Seeded, blocked: Seeded) => setBlocked(blocker.id, blocked.id, true);
const suspend = (user: Seeded) => setSuspended(user.id, true);
async function directChat(a: Seeded, b: Seeded): Promise<string> {
  const res = await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
  expect([200, 201]).toContain(res.status);
  return res.json.data.id;
}
async function groupChat(owner: Seeded, members: Seeded[]): Promise<string> {
  const res = await call("POST", "/api/v1/chats", {
    token: owner.token,
    body: { type: "group", title: "G", memberIds: members.map((m) => m.id) },
  });
  expect(res.status).toBe(201);
  return res.json.data.id;
}
function sendV2(user: Seeded, body: Record<string, unknown>, headers?: Record<string, string>) {
  return call("POST", "/api/v2/messages", { token: user.token, body, ...(headers ? { headers } : {}) });
}

describe("POST /api/v1/messages", () => {
  it("sends into the direct chat, creating it if missing, with seq 1, 2…", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const first = await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "  hi  " } });
    expect(first.status).toBe(201);
    const message = first.json.data;
    expect(messageSchema.parse(message)).toEqual(message);
    expect(message).toMatchObject({
      seq: 1,
      senderId: a.id,
      type: "text",
      content: "hi",
      replyToMessageId: null,
      clientMessageId: null,
      creditTransfer: null,
      editedAt: null,
      deletedAt: null,
    });
    expect(message.createdAt).toMatch(ISO);
    const reply = await call("POST", "/api/v1/messages", { token: b.token, body: { recipientId: a.id, content: "yo" } });
    expect(reply.json.data).toMatchObject({ chatId: message.chatId, seq: 2 });
    const chat = await call("GET", `/api/v1/chats/${message.chatId}`, { token: a.token });
    expect(chat.json.data).toMatchObject({ type: "direct", lastSeq: 2, unreadCount: 1, lastMessage: { content: "yo" } });
  });

  it("refuses bad content, self, unknown, blocked and suspended", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const post = (user: Seeded, body: unknown) => call("POST", "/api/v1/messages", { token: user.token, body });
    expectError(await post(a, { recipientId: b.id, content: "   \n\t " }), 400, "validation_failed");
    expectError(await post(a, { recipientId: b.id, content: "" }), 400, "validation_failed");
    expectError(await post(a, { recipientId: b.id, content: "x".repeat(4001) }), 400, "validation_failed");
    expect((await post(a, { recipientId: b.id, content: "x".repeat(4000) })).status).toBe(201);
    // 4000 characters that are 8000 UTF-16 units are still 4000 characters.
    expect((await post(a, { recipientId: b.id, content: "😀".repeat(4000) })).status).toBe(201);
    expectError(await post(a, { recipientId: b.id }), 400, "validation_failed");
    expectError(await post(a, { recipientId: "abc", content: "x" }), 400, "validation_failed");
    expectError(await post(a, { recipientId: a.id, content: "x" }), 400, "validation_failed");
    expectError(await post(a, { recipientId: newId(), content: "x" }), 404, "user_not_found");
    expectError(
      await call("POST", "/api/v1/messages", { body: { recipientId: b.id, content: "x" } }),
      401,
      "authentication_required",
    );
    await block(b, a);
    expectError(await post(a, { recipientId: b.id, content: "x" }), 403, "recipient_blocked");
    expect((await post(b, { recipientId: a.id, content: "the blocker can still write" })).status).toBe(201);
    await suspend(b);
    expectError(await post(b, { recipientId: a.id, content: "x" }), 403, "account_suspended");
  });
});

describe("POST /api/v2/messages", () => {
  it("authorization matrix: member 201, non-member 404, blocked 403 in direct but not in groups, suspended 403", async () => {
    const owner = await seedUser();
    const member = await seedUser();
    const outsider = await seedUser();
    const group = await groupChat(owner, [member]);
    expect((await sendV2(member, { chatId: group, content: "hello" })).status).toBe(201);
    expect((await sendV2(owner, { chatId: group, content: "hello" })).status).toBe(201);
    expectError(await sendV2(outsider, { chatId: group, content: "hi" }), 404, "chat_not_found");
    expectError(await sendV2(owner, { chatId: newId(), content: "hi" }), 404, "chat_not_found");

    await block(member, owner);
    // Blocks do not stop group messages.
    expect((await sendV2(owner, { chatId: group, content: "still here" })).status).toBe(201);
    const direct = await directChat(member, owner);
    expectError(await sendV2(owner, { chatId: direct, content: "hi" }), 403, "recipient_blocked");
    expect((await sendV2(member, { chatId: direct, content: "I blocked you but can write" })).status).toBe(201);

    await suspend(member);
    expectError(await sendV2(member, { chatId: group, content: "hi" }), 403, "account_suspended");
    expectError(await sendV2(member, { chatId: direct, content: "hi" }), 403, "account_suspended");
  });

  it("validates the body", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    expectError(await sendV2(a, { chatId, content: " " }), 400, "validation_failed");
    expectError(await sendV2(a, { content: "x" }), 400, "validation_failed");
    expectError(await sendV2(a, { chatId: "1", content: "x" }), 400, "validation_failed");
    expectError(await sendV2(a, { chatId, content: "x", clientMessageId: "" }), 400, "validation_failed");
    expectError(await sendV2(a, { chatId, content: "x", clientMessageId: "x".repeat(129) }), 400, "validation_failed");
    expectError(await sendV2(a, { chatId, content: "x", clientMessageId: "é" }), 400, "validation_failed");
    expectError(await sendV2(a, { chatId, content: "x", replyToMessageId: "zz" }), 400, "validation_failed");
    expect((await sendV2(a, { chatId, content: "x", clientMessageId: "x".repeat(128) })).status).toBe(201);
  });

  it("accepts explicit nulls for replyToMessageId and clientMessageId as absent", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const first = await sendV2(a, { chatId, content: "x", replyToMessageId: null, clientMessageId: null });
    expect(first.status).toBe(201);
    expect(first.json.data).toMatchObject({ replyToMessageId: null, clientMessageId: null });
    // null never deduplicates: a second null-id send is a new message.
    const second = await sendV2(a, { chatId, content: "x", clientMessageId: null });
    expect(second.status).toBe(201);
    expect(second.json.data.id).not.toBe(first.json.data.id);
    // With an Idempotency-Key, null and omitted are the same request.
    const headers = { "Idempotency-Key": "null-is-absent" };
    const keyed = await sendV2(a, { chatId, content: "y", replyToMessageId: null }, headers);
    expect(keyed.status).toBe(201);
    const replay = await sendV2(a, { chatId, content: "y" }, headers);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(keyed.text);
  });

  it("replies must point into the same chat", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const c = await seedUser();
    const ab = await directChat(a, b);
    const ac = await directChat(a, c);
    const original = (await sendV2(b, { chatId: ab, content: "question" })).json.data;
    const reply = await sendV2(a, { chatId: ab, content: "answer", replyToMessageId: original.id });
    expect(reply.status).toBe(201);
    expect(reply.json.data.replyToMessageId).toBe(original.id);
    const res = expectError(
      await sendV2(a, { chatId: ac, content: "x", replyToMessageId: original.id }),
      400,
      "validation_failed",
    );
    expect(res.errors[1]).toContain("replyToMessageId");
    expectError(await sendV2(a, { chatId: ab, content: "x", replyToMessageId: newId() }), 400, "validation_failed");
  });

  it("deduplicates by clientMessageId per sender and chat: the original with 200", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const first = await sendV2(a, { chatId, content: "once", clientMessageId: "m-1" });
    expect(first.status).toBe(201);
    const again = await sendV2(a, { chatId, content: "once (retry)", clientMessageId: "m-1" });
    expect(again.status).toBe(200);
    expect(again.json.statusCode).toBe(200);
    expect(again.json.data).toEqual(first.json.data);
    // Another sender, or another chat, may use the same clientMessageId.
    expect((await sendV2(b, { chatId, content: "mine", clientMessageId: "m-1" })).status).toBe(201);
    const other = await directChat(a, await seedUser());
    expect((await sendV2(a, { chatId: other, content: "elsewhere", clientMessageId: "m-1" })).status).toBe(201);

    // Concurrent duplicates: one message, no seq burnt.
    const racing = await Promise.all(
      Array.from({ length: 8 }, () => sendV2(a, { chatId, content: "race", clientMessageId: "m-2" })),
    );
    expect(new Set(racing.map((r) => r.json.data.id)).size).toBe(1);
    expect(racing.filter((r) => r.status === 201)).toHaveLength(1);
    expect(racing.filter((r) => r.status === 200)).toHaveLength(7);
    const next = await sendV2(a, { chatId, content: "after" });
    expect(next.json.data.seq).toBe(racing[0]!.json.data.seq + 1);
  });

  it("50 concurrent sends into one chat get exactly seq 1..50", async () => {
    const owner = await seedUser();
    const members = await Promise.all(Array.from({ length: 4 }, () => seedUser()));
    const chatId = await groupChat(owner, members);
    const senders = [owner, ...members];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => sendV2(senders[i % senders.length]!, { chatId, content: `m${i}` })),
    );
    expect(results.every((r) => r.status === 201)).toBe(true);
    const seqs = results.map((r) => r.json.data.seq).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const chat = await call("GET", `/api/v1/chats/${chatId}`, { token: owner.token });
    expect(chat.json.data.lastSeq).toBe(50);
    const listed = await call("GET", `/api/v1/messages/chat/${chatId}?afterSeq=0&limit=100`, { token: owner.token });
    expect(listed.json.data.items.map((m: { seq: number }) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it("sending moves your own read marker; others' unread grows", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    await sendV2(a, { chatId, content: "1" });
    await sendV2(a, { chatId, content: "2" });
    await sendV2(b, { chatId, content: "3" });
    const mine = await call("GET", `/api/v1/chats/${chatId}`, { token: a.token });
    const theirs = await call("GET", `/api/v1/chats/${chatId}`, { token: b.token });
    expect(mine.json.data.unreadCount).toBe(1);
    expect(theirs.json.data.unreadCount).toBe(0);
  });

  it("is rate limited per user with 429 rate_limited and Retry-After", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const vars = { RATE_LIMIT_MESSAGES_PER_MINUTE: "2" };
    const post = () => call("POST", "/api/v2/messages", { token: a.token, body: { chatId, content: "x" }, vars });
    expect((await post()).status).toBe(201);
    expect((await post()).status).toBe(201);
    const limited = await post();
    expectError(limited, 429, "rate_limited");
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThan(0);
    // A refused send changed nothing.
    const chat = await call("GET", `/api/v1/chats/${chatId}`, { token: a.token });
    expect(chat.json.data.lastSeq).toBe(2);
  });
});

describe("Idempotency-Key on message POSTs", () => {
  it("same key + same body replays the original status and body with Idempotent-Replayed", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "key-1" };
    const first = await call("POST", "/api/v1/messages", {
      token: a.token,
      body: { recipientId: b.id, content: "pay day" },
      headers,
    });
    expect(first.status).toBe(201);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    // Same body with keys in another order is the same request.
    const again = await call("POST", "/api/v1/messages", {
      token: a.token,
      body: { content: "pay day", recipientId: b.id },
      headers,
    });
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.text).toBe(first.text);
    const chat = await call("GET", `/api/v1/chats/${first.json.data.chatId}`, { token: a.token });
    expect(chat.json.data.lastSeq).toBe(1);
  });

  it("same key + different body (or another endpoint) is 409 idempotency_key_reused; keys are per caller", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "key-2" };
    expect(
      (await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "one" }, headers })).status,
    ).toBe(201);
    expectError(
      await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "two" }, headers }),
      409,
      "idempotency_key_reused",
    );
    const chatId = await directChat(a, b);
    expectError(await sendV2(a, { chatId, content: "one" }, headers), 409, "idempotency_key_reused");
    // Another caller's identical key is theirs.
    expect(
      (await call("POST", "/api/v1/messages", { token: b.token, body: { recipientId: a.id, content: "one" }, headers })).status,
    ).toBe(201);
  });

  it("refusals store nothing: a corrected retry with the same key runs", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "key-3" };
    expectError(
      await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: newId(), content: "x" }, headers }),
      404,
      "user_not_found",
    );
    await block(b, a);
    expectError(
      await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "x" }, headers }),
      403,
      "recipient_blocked",
    );
    await setBlocked(b.id, a.id, false);
    const ok = await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "x" }, headers });
    expect(ok.status).toBe(201);
    expect(ok.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("rejects malformed keys with 400 on field Idempotency-Key", async () => {
    const a = await seedUser();
    const b = await seedUser();
    for (const key of ["x".repeat(256), "tab\tkey"]) {
      const res = expectError(
        await call("POST", "/api/v1/messages", {
          token: a.token,
          body: { recipientId: b.id, content: "x" },
          headers: { "Idempotency-Key": key },
        }),
        400,
        "validation_failed",
      );
      expect(res.errors[1]).toMatch(/^Idempotency-Key: /);
    }
    expect(
      (
        await call("POST", "/api/v1/messages", {
          token: a.token,
          body: { recipientId: b.id, content: "x" },
          headers: { "Idempotency-Key": "x".repeat(255) },
        })
      ).status,
    ).toBe(201);
  });

  it("concurrent requests with the same key create one message and answer the same", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const headers = { "Idempotency-Key": "key-4" };
    const results = await Promise.all(Array.from({ length: 10 }, () => sendV2(a, { chatId, content: "only once" }, headers)));
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect(new Set(results.map((r) => r.json.data.id)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(9);
    const list = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: a.token });
    expect(list.json.data.items).toHaveLength(1);
  });

  it("a claim left pending by a request that died is taken over; an expired key is free again", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const body = { recipientId: b.id, content: "after a crash" };
    const fingerprint = await requestFingerprint("POST", "/api/v1/messages", body);
    await db.insert(idempotencyKeys).values({
      userId: a.id,
      key: "died",
      fingerprint,
      responseStatus: null,
      responseBody: null,
      createdAt: Date.now() - 60_000,
    });
    const res = await call("POST", "/api/v1/messages", { token: a.token, body, headers: { "Idempotency-Key": "died" } });
    expect(res.status).toBe(201);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();

    await db.insert(idempotencyKeys).values({
      userId: a.id,
      key: "old",
      fingerprint: "something else entirely",
      responseStatus: 201,
      responseBody: "{}",
      createdAt: Date.now() - IDEMPOTENCY_RETENTION_MS - 1000,
    });
    const reused = await call("POST", "/api/v1/messages", { token: a.token, body, headers: { "Idempotency-Key": "old" } });
    expect(reused.status).toBe(201);
    expect(reused.json.data.seq).toBe(2);
  });

  it("a send whose chat call fails, then corrected: the 5xx stored nothing, so the corrected retry with the same key runs", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const headers = { "Idempotency-Key": "failed-then-corrected" };
    chatFaults.failSends = (cmd) => (cmd.key?.key === headers["Idempotency-Key"] ? "before" : null);
    try {
      expect((await sendV2(a, { chatId, content: "first try" }, headers)).status).toBe(500);
    } finally {
      chatFaults.failSends = null;
    }
    // A corrected body under the same key runs (a 5xx stores nothing: API.md §1), once.
    const corrected = await sendV2(a, { chatId, content: "corrected" }, headers);
    expect(corrected.status).toBe(201);
    expect(corrected.headers.get("Idempotent-Replayed")).toBeNull();
    expect(corrected.json.data.content).toBe("corrected");
    const list = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: a.token });
    expect(list.json.data.items.map((m: { id: string }) => m.id)).toEqual([corrected.json.data.id]);
    // That answer is now the stored one, byte for byte.
    const again = await sendV2(a, { chatId, content: "corrected" }, headers);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.text).toBe(corrected.text);
  });

  it("a send that committed but whose answer was lost: the retry with its key replays the stored 201", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const headers = { "Idempotency-Key": "answer-lost" };
    chatFaults.failSends = (cmd) => (cmd.key?.key === headers["Idempotency-Key"] ? "after" : null);
    try {
      expect((await sendV2(a, { chatId, content: "once" }, headers)).status).toBe(500);
    } finally {
      chatFaults.failSends = null;
    }
    const retry = await sendV2(a, { chatId, content: "once" }, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotent-Replayed")).toBe("true");
    const list = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: a.token });
    expect(list.json.data.items).toHaveLength(1);
  });

  it("a v2 clientMessageId duplicate under a new key answers 200 and that 200 is what the key replays", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    await sendV2(a, { chatId, content: "hi", clientMessageId: "c-1" }, { "Idempotency-Key": "k-a" });
    const dup = await sendV2(a, { chatId, content: "hi", clientMessageId: "c-1" }, { "Idempotency-Key": "k-b" });
    expect(dup.status).toBe(200);
    const replay = await sendV2(a, { chatId, content: "hi", clientMessageId: "c-1" }, { "Idempotency-Key": "k-b" });
    expect(replay.status).toBe(200);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
  });
});

describe("GET /api/v1/messages/chat/{chatId}", () => {
  it("newest first with a cursor; afterSeq oldest first with its own paging", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    for (let i = 1; i <= 7; i++) await sendV2(i % 2 ? a : b, { chatId, content: `m${i}` });
    const page1 = await call("GET", `/api/v1/messages/chat/${chatId}?limit=3`, { token: b.token });
    expect(page1.status).toBe(200);
    expect(page1.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([7, 6, 5]);
    const page2 = await call("GET", `/api/v1/messages/chat/${chatId}?limit=3&cursor=${page1.json.data.nextCursor}`, {
      token: b.token,
    });
    expect(page2.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([4, 3, 2]);
    const page3 = await call("GET", `/api/v1/messages/chat/${chatId}?limit=3&cursor=${page2.json.data.nextCursor}`, {
      token: b.token,
    });
    expect(page3.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([1]);
    expect(page3.json.data.nextCursor).toBeNull();

    const catchUp = await call("GET", `/api/v1/messages/chat/${chatId}?afterSeq=2&limit=3`, { token: b.token });
    expect(catchUp.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([3, 4, 5]);
    const catchUp2 = await call(
      "GET",
      `/api/v1/messages/chat/${chatId}?afterSeq=2&limit=3&cursor=${catchUp.json.data.nextCursor}`,
      {
        token: b.token,
      },
    );
    expect(catchUp2.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([6, 7]);
    expect(catchUp2.json.data.nextCursor).toBeNull();
    const upToDate = await call("GET", `/api/v1/messages/chat/${chatId}?afterSeq=7`, { token: b.token });
    expect(upToDate.json.data).toEqual({ items: [], nextCursor: null });
  });

  it("paging a few hundred messages with small pages while new ones arrive: no duplicates, no misses", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    // Seeded straight into the chat object (the route's per-minute limit would stop 300 sends).
    const sendInto = (senderId: string, content: string) =>
      chatStub(env, chatId).send({
        chatId,
        senderId,
        content,
        replyToMessageId: null,
        clientMessageId: null,
        key: null,
        ratePerMinute: 1_000_000,
      });
    for (let i = 0; i < 300; i++) await sendInto(i % 2 ? a.id : b.id, `old ${i}`);

    const seen: number[] = [];
    let cursor: string | null = null;
    let arrivals = 0;
    do {
      const query: string = cursor ? `limit=7&cursor=${cursor}` : "limit=7";
      const page = await call("GET", `/api/v1/messages/chat/${chatId}?${query}`, { token: a.token });
      expect(page.status).toBe(200);
      seen.push(...page.json.data.items.map((m: { seq: number }) => m.seq));
      cursor = page.json.data.nextCursor;
      // New messages arrive between pages.
      if (arrivals < 20) {
        await sendInto(b.id, `new ${arrivals}`);
        arrivals++;
      }
    } while (cursor);
    // Backwards paging covers exactly what existed when it started: 300..1, each once.
    expect(seen).toEqual(Array.from({ length: 300 }, (_, i) => 300 - i));

    // Catching up forwards from the newest seq seen picks up every arrival exactly once, in order.
    const caught: number[] = [];
    let after: string | null = null;
    do {
      const query: string = after ? `limit=6&cursor=${after}` : "limit=6&afterSeq=300";
      const page = await call("GET", `/api/v1/messages/chat/${chatId}?${query}`, { token: a.token });
      caught.push(...page.json.data.items.map((m: { seq: number }) => m.seq));
      after = page.json.data.nextCursor;
    } while (after);
    expect(caught).toEqual(Array.from({ length: 20 }, (_, i) => 301 + i));
  });

  it("refuses non-members (404), bad params (400) and cursors of other chats or tampered ones (400)", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const outsider = await seedUser();
    const chatId = await directChat(a, b);
    const other = await directChat(a, outsider);
    for (let i = 0; i < 3; i++) await sendV2(a, { chatId, content: `m${i}` });
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}`, { token: outsider.token }), 404, "chat_not_found");
    expectError(await call("GET", `/api/v1/messages/chat/${newId()}`, { token: a.token }), 404, "chat_not_found");
    expectError(await call("GET", "/api/v1/messages/chat/nope", { token: a.token }), 400, "validation_failed");
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}?limit=0`, { token: a.token }), 400, "validation_failed");
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}?afterSeq=-1`, { token: a.token }), 400, "validation_failed");
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}?afterSeq=1.5`, { token: a.token }), 400, "validation_failed");
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}?cursor=%%%`, { token: a.token }), 400, "validation_failed");
    const page = await call("GET", `/api/v1/messages/chat/${chatId}?limit=1`, { token: a.token });
    const cursor = page.json.data.nextCursor;
    expectError(
      await call("GET", `/api/v1/messages/chat/${other}?cursor=${cursor}`, { token: a.token }),
      400,
      "validation_failed",
    );
    const tampered = btoa(JSON.stringify({ c: chatId, s: "2", o: "desc" }));
    expectError(
      await call("GET", `/api/v1/messages/chat/${chatId}?cursor=${tampered}`, { token: a.token }),
      400,
      "validation_failed",
    );
    expectError(await call("GET", `/api/v1/messages/chat/${chatId}`), 401, "authentication_required");
  });
});

describe("PATCH and DELETE /api/v1/messages/{messageId}", () => {
  it("edits your own text message (editedAt) and deletes it (content null, keeps seq)", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const m = (await sendV2(a, { chatId, content: "tpyo" })).json.data;
    await sendV2(b, { chatId, content: "after" });
    const edited = await call("PATCH", `/api/v1/messages/${m.id}`, { token: a.token, body: { content: " typo " } });
    expect(edited.status).toBe(200);
    expect(edited.json.data).toMatchObject({ id: m.id, seq: m.seq, content: "typo", deletedAt: null });
    expect(edited.json.data.editedAt).toMatch(ISO);
    const deleted = await call("DELETE", `/api/v1/messages/${m.id}`, { token: a.token });
    expect(deleted.status).toBe(200);
    expect(deleted.json.data).toMatchObject({ id: m.id, seq: 1, content: null });
    expect(deleted.json.data.deletedAt).toMatch(ISO);
    const list = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: b.token });
    expect(list.json.data.items.map((x: { seq: number; content: string | null }) => [x.seq, x.content])).toEqual([
      [2, "after"],
      [1, null],
    ]);
    // A deleted message is immutable.
    expectError(
      await call("PATCH", `/api/v1/messages/${m.id}`, { token: a.token, body: { content: "back" } }),
      409,
      "message_immutable",
    );
    expectError(await call("DELETE", `/api/v1/messages/${m.id}`, { token: a.token }), 409, "message_immutable");
  });

  it("checks in order: 404 not found / not a member, 403 not yours, 409 credit_transfer or system", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const outsider = await seedUser();
    const chatId = await directChat(a, b);
    const mine = (await sendV2(a, { chatId, content: "mine" })).json.data;
    const patch = (user: Seeded, id: string, content = "x") =>
      call("PATCH", `/api/v1/messages/${id}`, { token: user.token, body: { content } });
    const del = (user: Seeded, id: string) => call("DELETE", `/api/v1/messages/${id}`, { token: user.token });

    expectError(await patch(a, newId()), 404, "message_not_found");
    expectError(await del(a, newId()), 404, "message_not_found");
    expectError(await patch(outsider, mine.id), 404, "message_not_found");
    expectError(await del(outsider, mine.id), 404, "message_not_found");
    expectError(await patch(b, mine.id), 403, "insufficient_permissions");
    expectError(await del(b, mine.id), 403, "insufficient_permissions");
    expectError(await patch(a, "bad"), 400, "validation_failed");
    expectError(await patch(a, mine.id, "   "), 400, "validation_failed");

    // A credit transfer's message: its id is the transfer's (no route tag), found through the wallets.
    await openWallet(env, a.id);
    const sent = await call("POST", "/api/v1/messages/credit-transfer", {
      token: a.token,
      body: { recipientId: b.id, amount: 5 },
    });
    expect(sent.status).toBe(201);
    const transfer = { id: sent.json.data.messageId as string };
    expectError(await patch(a, transfer.id), 409, "message_immutable");
    expectError(await del(a, transfer.id), 409, "message_immutable");
    // Someone else's credit transfer: 403 comes before 409.
    expectError(await patch(b, transfer.id), 403, "insufficient_permissions");

    const owner = await seedUser();
    const group = await groupChat(owner, []);
    const added = await call("POST", `/api/v1/chats/${group}/members`, { token: owner.token, body: { userId: a.id } });
    const system = added.json.data.lastMessage;
    expect(system.type).toBe("system");
    expectError(await patch(owner, system.id), 409, "message_immutable");
    expectError(await del(owner, system.id), 409, "message_immutable");
  });

  it("a suspended sender cannot edit but can delete", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await directChat(a, b);
    const m = (await sendV2(a, { chatId, content: "x" })).json.data;
    await suspend(a);
    expectError(
      await call("PATCH", `/api/v1/messages/${m.id}`, { token: a.token, body: { content: "y" } }),
      403,
      "account_suspended",
    );
    expect((await call("DELETE", `/api/v1/messages/${m.id}`, { token: a.token })).status).toBe(200);
  });
});
