import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { blocks, chats, idempotencyKeys, users } from "../src/db/schema";
import { IDEMPOTENCY_RETENTION_MS, requestFingerprint } from "../src/lib/idempotency";
import { newId } from "../src/lib/ids";
import { countingD1 } from "./support/d1-counter";
import { withTriggers } from "./support/d1-triggers";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";

/**
 * A keyed send on a fresh key is ONE D1 round trip: its message batch inserts the message only
 * while the key is free, and writes the key with the message and its 201 (services/idempotency.ts).
 * Everything else a key promises (API.md §1) holds as before.
 */
type Seeded = Awaited<ReturnType<typeof seedUser>>;
const db = createDb(env.DB);

async function directChat(a: Seeded, b: Seeded): Promise<string> {
  const res = await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
  expect([200, 201]).toContain(res.status);
  return res.json.data.id;
}

/** A send through a D1 binding that counts the round trips it made. */
async function counted(method: string, path: string, user: Seeded, body: unknown, headers: Record<string, string>, vars = {}) {
  const { d1, roundTrips } = countingD1(env.DB);
  const res = await call(method, path, { token: user.token, body, headers, vars, bindings: { DB: d1 } });
  return { res, roundTrips };
}

/** A v2 send through the counting binding. */
const counted2 = (user: Seeded, body: unknown, headers: Record<string, string>) =>
  counted("POST", "/api/v2/messages", user, body, headers);

/** Two users and their direct chat. */
async function pairInChat() {
  const a = await seedUser();
  const b = await seedUser();
  return { a, b, chatId: await directChat(a, b) };
}

const keyRow = (user: Seeded, key: string) =>
  db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.userId, user.id), eq(idempotencyKeys.key, key)))
    .get();

const send1 = (user: Seeded, body: unknown, headers: Record<string, string>) =>
  call("POST", "/api/v1/messages", { token: user.token, body, headers });
const send2 = (user: Seeded, body: unknown, headers: Record<string, string>) =>
  call("POST", "/api/v2/messages", { token: user.token, body, headers });

const listOf = async (user: Seeded, chatId: string) =>
  (await call("GET", `/api/v1/messages/chat/${chatId}`, { token: user.token })).json.data.items as {
    id: string;
    content: string;
  }[];

describe("a keyed send on a fresh key", () => {
  it("v2 is one D1 round trip, and the 201 it answered is stored with the message", async () => {
    const { a, chatId } = await pairInChat();
    const { res, roundTrips } = await counted2(a, { chatId, content: "one trip" }, { "Idempotency-Key": "v2-fresh" });
    expect(res.status).toBe(201);
    // Statements are what a batch costs (bench/README.md): the insert, the chat, the memberships,
    // the key with its outcome, and ONE read of the message, the sender's facts and presence.
    expect(roundTrips).toEqual(["batch of 5"]);
    const row = await keyRow(a, "v2-fresh");
    expect(row).toMatchObject({ responseStatus: 201, responseBody: res.text, messageId: res.json.data.id });
    // Unkeyed, the same send is one round trip too, one statement fewer: the key adds one.
    const unkeyed = await counted2(a, { chatId, content: "no key" }, {});
    expect(unkeyed.res.status).toBe(201);
    expect(unkeyed.roundTrips).toEqual(["batch of 4"]);
  });

  it("v1 is one D1 round trip, creating the direct chat in it", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const body = { recipientId: b.id, content: "first contact" };
    const { res, roundTrips } = await counted("POST", "/api/v1/messages", a, body, { "Idempotency-Key": "v1-fresh" });
    expect(res.status).toBe(201);
    expect(roundTrips).toHaveLength(1);
    expect((await keyRow(a, "v1-fresh"))?.responseBody).toBe(res.text);
    const replay = await send1(a, body, { "Idempotency-Key": "v1-fresh" });
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(res.text);
  });

  it("an expired key is taken over in that one round trip", async () => {
    const { a, chatId } = await pairInChat();
    await db.insert(idempotencyKeys).values({
      userId: a.id,
      key: "expired",
      fingerprint: "another request, a day ago",
      responseStatus: 201,
      responseBody: "{}",
      createdAt: Date.now() - IDEMPOTENCY_RETENTION_MS - 1000,
    });
    const { res, roundTrips } = await counted2(a, { chatId, content: "new day" }, { "Idempotency-Key": "expired" });
    expect(res.status).toBe(201);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();
    expect(roundTrips).toHaveLength(1);
    expect((await keyRow(a, "expired"))?.responseBody).toBe(res.text);
  });
});

describe("replays of a send whose 201 was stored with its message", () => {
  it("are the first response byte for byte, also after the message was edited and after it was deleted", async () => {
    const { a, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "edit-then-replay" };
    const body = { chatId, content: "original words", clientMessageId: "c-edit" };
    const first = await send2(a, body, headers);
    expect(first.status).toBe(201);
    const send = () => send2(a, body, headers);
    const replay = await send();
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(first.text);

    const messageId = first.json.data.id;
    const edited = await call("PATCH", `/api/v1/messages/${messageId}`, { token: a.token, body: { content: "new words" } });
    expect(edited.status).toBe(200);
    const afterEdit = await send();
    expect(afterEdit.text).toBe(first.text);
    expect(afterEdit.json.data.content).toBe("original words");

    expect((await call("DELETE", `/api/v1/messages/${messageId}`, { token: a.token })).status).toBe(200);
    const afterDelete = await send();
    expect(afterDelete.status).toBe(201);
    expect(afterDelete.text).toBe(first.text);
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([messageId]);
  });

  it("store the message as D1 stored it: a body built before the batch is checked against the row", async () => {
    const { a, chatId } = await pairInChat();
    // Something between the request and the row (here a trigger) changes what is stored.
    const first = await withTriggers(
      { shout_on_insert: "AFTER INSERT ON messages BEGIN UPDATE messages SET content = upper(content) WHERE id = NEW.id; END" },
      () => send2(a, { chatId, content: "quiet" }, { "Idempotency-Key": "as-stored" }),
    );
    expect(first.status).toBe(201);
    expect(first.json.data.content).toBe("QUIET");
    expect((await listOf(a, chatId))[0]?.content).toBe("QUIET");
    const replay = await send2(a, { chatId, content: "quiet" }, { "Idempotency-Key": "as-stored" });
    expect(replay.text).toBe(first.text);
  });

  it("a send whose batch fails leaves neither message nor key: the retry posts the one message", async () => {
    const { a, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "atomic" };
    const body = { chatId, content: "all or nothing" };
    // Storing the outcome fails: it is in the message's batch, so nothing of the send commits.
    const failed = await withTriggers(
      {
        fail_outcome_insert:
          "BEFORE INSERT ON idempotency_keys WHEN NEW.response_status IS NOT NULL BEGIN SELECT RAISE(ABORT, 'injected'); END",
        fail_outcome_update:
          "BEFORE UPDATE OF response_status ON idempotency_keys WHEN NEW.response_status IS NOT NULL BEGIN SELECT RAISE(ABORT, 'injected'); END",
      },
      () => send2(a, body, headers),
    );
    expectError(failed, 500, "internal_error");
    expect(await listOf(a, chatId)).toEqual([]);
    expect(await keyRow(a, "atomic")).toBeUndefined();
    const retry = await send2(a, body, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([retry.json.data.id]);
  });
});

describe("a key already held when the batch runs", () => {
  it("concurrent duplicates post one message and all answer its bytes (v1, creating the chat)", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const body = { recipientId: b.id, content: "only once" };
    const headers = { "Idempotency-Key": "v1-race" };
    const results = await Promise.all(Array.from({ length: 8 }, () => send1(a, body, headers)));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(201));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(7);
    const chatId = results[0]?.json.data.chatId;
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([results[0]?.json.data.id]);
  });

  it("another body under the key is 409 and changes nothing: no message, no chat", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const c = await seedUser();
    const headers = { "Idempotency-Key": "taken" };
    const first = await send1(a, { recipientId: b.id, content: "x" }, headers);
    expect(first.status).toBe(201);
    // A v1 send to someone new would create the direct chat: not under a key another request holds.
    expectError(await send1(a, { recipientId: c.id, content: "x" }, headers), 409, "idempotency_key_reused");
    const chatsOfC = await db
      .select({ id: chats.id })
      .from(chats)
      .where(eq(chats.directKey, [a.id, c.id].sort().join(":")));
    expect(chatsOfC).toEqual([]);
    expect((await keyRow(a, "taken"))?.responseBody).toBe(first.text);
  });

  it("a replay is never rate limited and never counted", async () => {
    const { a, chatId } = await pairInChat();
    const vars = { RATE_LIMIT_MESSAGES_PER_MINUTE: "2" };
    const send = (key: string) =>
      call("POST", "/api/v2/messages", {
        token: a.token,
        body: { chatId, content: "limited" },
        headers: { "Idempotency-Key": key },
        vars,
      });
    const first = await send("r-1");
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("1");
    for (let i = 0; i < 3; i++) {
      const replay = await send("r-1");
      expect(replay.status).toBe(201);
      expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
      expect(replay.headers.get("X-RateLimit-Remaining")).toBeNull();
      expect(replay.text).toBe(first.text);
    }
    // The replays took nothing: the second key gets the last slot.
    const second = await send("r-2");
    expect(second.status).toBe(201);
    expect(second.headers.get("X-RateLimit-Remaining")).toBe("0");
    expectError(await send("r-3"), 429, "rate_limited");
    // Past the limit, both keys still answer their 201s.
    expect((await send("r-1")).text).toBe(first.text);
    expect((await send("r-2")).text).toBe(second.text);
    expect(await keyRow(a, "r-3")).toBeUndefined();
  });
});

describe("refusals store nothing", () => {
  it("403, 404 and 400 named by the batch leave no key, in that one round trip", async () => {
    const { a, b, chatId } = await pairInChat();
    const headers = { "Idempotency-Key": "refused" };
    await db.insert(blocks).values({ blockerId: b.id, blockedId: a.id, createdAt: Date.now() });
    const blocked = await counted2(a, { chatId, content: "x" }, headers);
    expectError(blocked.res, 403, "recipient_blocked");
    expect(blocked.roundTrips).toHaveLength(1);
    expect(await keyRow(a, "refused")).toBeUndefined();
    await db.delete(blocks).where(eq(blocks.blockerId, b.id));

    const notMine = await counted2(a, { chatId: newId(), content: "x" }, headers);
    expectError(notMine.res, 404, "chat_not_found");
    expect(await keyRow(a, "refused")).toBeUndefined();

    const badReply = await counted2(a, { chatId, content: "x", replyToMessageId: newId() }, headers);
    expectError(badReply.res, 400, "validation_failed");
    expect(await keyRow(a, "refused")).toBeUndefined();
    expect(await listOf(a, chatId)).toEqual([]);

    // A corrected retry with the same key runs.
    const ok = await send2(a, { chatId, content: "x" }, headers);
    expect(ok.status).toBe(201);
    expect(ok.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("a refusal before the batch (v1 to yourself) still lets a key with a stored outcome answer first", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const headers = { "Idempotency-Key": "self-check" };
    const first = await send1(a, { recipientId: b.id, content: "hi" }, headers);
    expect(first.status).toBe(201);
    // Another body under a used key is 409 before any check of that body (API.md §1).
    expectError(await send1(a, { recipientId: a.id, content: "hi" }, headers), 409, "idempotency_key_reused");
    // Under a new key the same body is refused, and keeps no key.
    expectError(await send1(a, { recipientId: a.id, content: "hi" }, { "Idempotency-Key": "self-2" }), 400, "validation_failed");
    expect(await keyRow(a, "self-2")).toBeUndefined();
  });

  it("a clientMessageId duplicate under a fresh key answers 200, stored for the key's replays", async () => {
    const { a, b, chatId } = await pairInChat();
    const body = { chatId, content: "dup", clientMessageId: "cm-1" };
    const original = await send2(a, body, { "Idempotency-Key": "cm-a" });
    expect(original.status).toBe(201);
    const dup = await send2(a, body, { "Idempotency-Key": "cm-b" });
    expect(dup.status).toBe(200);
    expect(dup.json.data.id).toBe(original.json.data.id);
    expect(await keyRow(a, "cm-b")).toMatchObject({ responseStatus: 200, responseBody: dup.text, messageId: null });
    const replay = await send2(a, body, { "Idempotency-Key": "cm-b" });
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(dup.text);
  });
});

describe("a clientMessageId duplicate and its key", () => {
  it("concurrent sends under one key with one clientMessageId post one message and all answer its bytes", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "once", clientMessageId: "cm-race" };
    const results = await Promise.all(Array.from({ length: 6 }, () => send2(a, body, { "Idempotency-Key": "cm-race-key" })));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(5);
    expect((await listOf(a, chatId)).map((m) => m.id)).toEqual([results[0]?.json.data.id]);
  });

  it("under a key held with another body is 409 and leaves the key's row as it was", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "dup", clientMessageId: "cm-held" };
    expect((await send2(a, body, {})).status).toBe(201);
    const other = await send2(a, { chatId, content: "another body" }, { "Idempotency-Key": "cm-held-key" });
    expect(other.status).toBe(201);
    const before = await keyRow(a, "cm-held-key");
    expectError(await send2(a, body, { "Idempotency-Key": "cm-held-key" }), 409, "idempotency_key_reused");
    expect(await keyRow(a, "cm-held-key")).toEqual(before);
    expect(await listOf(a, chatId)).toHaveLength(2);
  });

  it("over a key's row past retention answers 200 and stores it under the new request", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "dup", clientMessageId: "cm-old" };
    const original = await send2(a, body, {});
    await db.insert(idempotencyKeys).values({
      userId: a.id,
      key: "cm-old-key",
      fingerprint: "another request, a day ago",
      responseStatus: 201,
      responseBody: "{}",
      createdAt: Date.now() - IDEMPOTENCY_RETENTION_MS - 1000,
    });
    const dup = await send2(a, body, { "Idempotency-Key": "cm-old-key" });
    expect(dup.status).toBe(200);
    expect(dup.json.data.id).toBe(original.json.data.id);
    expect(await keyRow(a, "cm-old-key")).toMatchObject({
      fingerprint: await requestFingerprint("POST", "/api/v2/messages", body),
      responseStatus: 200,
      responseBody: dup.text,
      messageId: null,
    });
  });

  it("from a sender suspended since the original is 403 and leaves no key", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "dup", clientMessageId: "cm-suspended" };
    expect((await send2(a, body, {})).status).toBe(201);
    await db.update(users).set({ status: "suspended" }).where(eq(users.id, a.id));
    expectError(await send2(a, body, { "Idempotency-Key": "cm-suspended-key" }), 403, "account_suspended");
    expect(await keyRow(a, "cm-suspended-key")).toBeUndefined();
  });
});

describe("a duplicate that finds the first one in flight", () => {
  it("waits for it and answers its bytes (the claim-first way), one message", async () => {
    const { a, chatId } = await pairInChat();
    const body = { chatId, content: "in flight" };
    // The first request holds the key (claim-first, not yet finished) when the duplicate's batch runs.
    const claimedAt = Date.now();
    await db.insert(idempotencyKeys).values({
      userId: a.id,
      key: "in-flight",
      fingerprint: await requestFingerprint("POST", "/api/v2/messages", body),
      responseStatus: null,
      responseBody: null,
      createdAt: claimedAt,
    });
    const stored = '{"stored":"by the first request"}';
    const duplicate = send2(a, body, { "Idempotency-Key": "in-flight" });
    await new Promise((resolve) => setTimeout(resolve, 150));
    await db
      .update(idempotencyKeys)
      .set({ responseStatus: 201, responseBody: stored })
      .where(and(eq(idempotencyKeys.userId, a.id), eq(idempotencyKeys.key, "in-flight")));
    const res = await duplicate;
    expect(res.status).toBe(201);
    expect(res.headers.get("Idempotent-Replayed")).toBe("true");
    expect(res.text).toBe(stored);
    expect(await listOf(a, chatId)).toEqual([]);
  });
});

describe("the claim-first path does bounded work", () => {
  it("a replay that takes the claim-first way never deletes other callers' expired keys (the daily purge does)", async () => {
    const { a, chatId } = await pairInChat();
    const other = await seedUser();
    const expiredAt = Date.now() - IDEMPOTENCY_RETENTION_MS - 60_000;
    await db.insert(idempotencyKeys).values({
      userId: other.id,
      key: "old",
      fingerprint: "f",
      responseStatus: 201,
      responseBody: "{}",
      createdAt: expiredAt,
    });
    const first = await send2(a, { chatId, content: "once" }, { "Idempotency-Key": "claim-first" });
    expect(first.status).toBe(201);
    // The key is held now, so the replay's batch finds it live and goes the claim-first way.
    const replay = await send2(a, { chatId, content: "once" }, { "Idempotency-Key": "claim-first" });
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await keyRow(other, "old")).toMatchObject({ createdAt: expiredAt });
  });
});
