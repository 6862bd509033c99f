import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { getTableConfig } from "drizzle-orm/sqlite-core";
import { describe, expect, it } from "vitest";
import { chatSchema, migrate } from "../src/durable-objects/chat/chat-schema";
import { newId } from "../src/lib/ids";
import { chatStub } from "../src/services/chat-objects";
import { flushDirectory } from "./support/chats";
import { withTriggers } from "./support/d1-triggers";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, connectAs } from "./support/realtime";
import { seedUser } from "./support/users";

/** Issue 21: every chat is its own object; D1 keeps the directory, and nothing in it grows per message or per member. */
type Seeded = Awaited<ReturnType<typeof seedUser>>;

closeSocketsAfterEach();

/** A D1 binding that fails every query, as a D1 outage would. */
const downD1 = new Proxy(env.DB, {
  get() {
    return () => {
      throw new Error("D1 is down");
    };
  },
}) as D1Database;

async function group(owner: Seeded, members: Seeded[], title = "G"): Promise<string> {
  const res = await call("POST", "/api/v1/chats", {
    token: owner.token,
    body: { type: "group", title, memberIds: members.map((m) => m.id) },
  });
  expect(res.status).toBe(201);
  return res.json.data.id;
}

const send = (user: Seeded, chatId: string, content: string, bindings: Partial<Env> = {}) =>
  call("POST", "/api/v2/messages", { token: user.token, body: { chatId, content }, bindings });

const chatListOf = async (user: Seeded) =>
  (await call("GET", "/api/v1/chats", { token: user.token })).json.data.items as {
    id: string;
    lastSeq: number;
    unreadCount: number;
  }[];

describe("a chat without D1", () => {
  it("a member sends into and reads an existing chat while D1 fails every query; the directory catches up once D1 answers", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await group(a, [b]);
    expect((await send(a, chatId, "before")).status).toBe(201);
    await flushDirectory([chatId]);
    const failSummaries = { d1_down: "BEFORE UPDATE ON chats BEGIN SELECT RAISE(ABORT, 'D1 down'); END" };
    await withTriggers(failSummaries, async () => {
      for (const content of ["during 1", "during 2"]) expect((await send(b, chatId, content, { DB: downD1 })).status).toBe(201);
      const page = await call("GET", `/api/v1/messages/chat/${chatId}`, { token: a.token, bindings: { DB: downD1 } });
      expect(page.json.data.items.map((m: { content: string }) => m.content)).toEqual(["during 2", "during 1", "before"]);
      const marker = await call("POST", `/api/v1/chats/${chatId}/read`, {
        token: a.token,
        body: { seq: 3 },
        bindings: { DB: downD1 },
      });
      expect(marker.json.data).toEqual({ chatId, lastReadSeq: 3, unreadCount: 0 });
      // The object tried to write the directory and failed: the list still shows the old summary.
      expect(await runDurableObjectAlarm(chatStub(env, chatId))).toBe(true);
      expect((await chatListOf(a)).find((c) => c.id === chatId)?.lastSeq).toBe(1);
    });
    // D1 answers again: the next attempt (the alarm, backing off) writes everything that was owed.
    expect(await runDurableObjectAlarm(chatStub(env, chatId))).toBe(true);
    expect((await chatListOf(a)).find((c) => c.id === chatId)).toMatchObject({ lastSeq: 3, unreadCount: 0 });
    expect((await chatListOf(b)).find((c) => c.id === chatId)).toMatchObject({ lastSeq: 3, unreadCount: 0 });
  });

  it("the chat list reflects a committed message within a second, without help", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await group(a, [b]);
    const sent = await send(a, chatId, "soon listed");
    const started = Date.now();
    let listed: { lastSeq: number; unreadCount: number } | undefined;
    while (Date.now() - started < 1000 && listed?.lastSeq !== 1) {
      listed = (await chatListOf(b)).find((c) => c.id === chatId);
      if (listed?.lastSeq !== 1) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(listed).toMatchObject({ lastSeq: 1, unreadCount: 1 });
    expect(sent.status).toBe(201);
  });
});

describe("blocks and suspensions reach the chat at once", () => {
  it("a block refuses the next send in the pair's direct chat within 1 s; the unblock lets it through again", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chat = await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
    const chatId = chat.json.data.id;
    expect((await send(a, chatId, "hi")).status).toBe(201);
    const blockedAt = Date.now();
    expect((await call("POST", `/api/v1/users/${a.id}/block`, { token: b.token })).status).toBe(200);
    expectError(await send(a, chatId, "still there?"), 403, "recipient_blocked");
    expect(Date.now() - blockedAt).toBeLessThan(1000);
    expect((await call("DELETE", `/api/v1/users/${a.id}/block`, { token: b.token })).status).toBe(200);
    expect((await send(a, chatId, "back")).status).toBe(201);
  });

  it("a suspension refuses the next send in every chat of the user within 1 s; the reinstatement lifts it", async () => {
    const admin = await seedUser({ role: "admin" });
    const a = await seedUser();
    const b = await seedUser();
    const chats = [await group(a, [b], "one"), await group(b, [a], "two")];
    for (const chatId of chats) expect((await send(a, chatId, "hi")).status).toBe(201);
    const suspendedAt = Date.now();
    const suspended = await call("POST", `/api/v1/admin/users/${a.id}/suspension`, {
      token: admin.token,
      body: { reason: "test" },
    });
    expect(suspended.status).toBe(200);
    for (const chatId of chats) expectError(await send(a, chatId, "x"), 403, "account_suspended");
    expect(Date.now() - suspendedAt).toBeLessThan(1000);
    expect((await call("DELETE", `/api/v1/admin/users/${a.id}/suspension`, { token: admin.token, body: {} })).status).toBe(200);
    for (const chatId of chats) expect((await send(a, chatId, "back")).status).toBe(201);
  });
});

describe("the directory grows per chat, not per message or member", () => {
  it("sends into a 100-member group write at most one chat row and one marker each, never a row per member (the chat's row and the senders' own markers, once per flush)", async () => {
    const owner = await seedUser();
    const members = await Promise.all(Array.from({ length: 99 }, () => seedUser()));
    const chatId = await group(owner, members);
    await flushDirectory([chatId]);
    const counting = Object.fromEntries(
      ["chats", "chat_members", "idempotency_keys", "users", "realtime_presence"].flatMap((table) =>
        ["INSERT", "UPDATE", "DELETE"].map((op) => [
          `count_${table}_${op.toLowerCase()}`,
          `AFTER ${op} ON ${table} BEGIN UPDATE test_rows_written SET n = n + 1; END`,
        ]),
      ),
    );
    await env.DB.batch([
      env.DB.prepare("CREATE TABLE IF NOT EXISTS test_rows_written (n INTEGER NOT NULL)"),
      env.DB.prepare("DELETE FROM test_rows_written"),
      env.DB.prepare("INSERT INTO test_rows_written (n) VALUES (0)"),
    ]);
    const senders = [owner, ...members.slice(0, 4)];
    const sends = 30;
    await withTriggers(counting, async () => {
      for (let i = 0; i < sends; i++) expect((await send(senders[i % senders.length]!, chatId, `m${i}`)).status).toBe(201);
      await flushDirectory([chatId]);
    });
    const written = (await env.DB.prepare("SELECT n FROM test_rows_written").first<{ n: number }>())?.n ?? Infinity;
    // Each flush writes the chat's summary row and the markers of those who sent since the last
    // one: at least one flush (1 + 5 rows). Flushes are 250 ms apart however many sends, so at
    // most one chat row and one marker per send whatever the timing (each send now also calls
    // all 99 members' realtime objects, which slows sends here), never a row per member (99).
    expect(written).toBeGreaterThanOrEqual(1 + senders.length);
    expect(written / sends).toBeLessThanOrEqual(2);
  });

  it("a call naming a chat that does not exist leaves no storage in its object", async () => {
    const a = await seedUser();
    const chatId = newId();
    expectError(await call("GET", `/api/v1/chats/${chatId}`, { token: a.token }), 404, "chat_not_found");
    expectError(await send(a, chatId, "anyone?"), 404, "chat_not_found");
    const tables = await runInDurableObject(chatStub(env, chatId), (_o, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'").toArray(),
    );
    expect(tables).toEqual([]);
  });
});

describe("realtime from the chat", () => {
  it("a socket opened after the chat last pushed to nobody gets the next message: the chat pushes to every member's realtime object", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const chatId = await group(a, [b]);
    expect((await send(a, chatId, "nobody listens")).status).toBe(201);
    const socket = await connectAs(b.token);
    const sent = await send(a, chatId, "now b listens");
    expect(await socket.next()).toMatchObject({ type: "message.created", data: { id: sent.json.data.id, seq: 2 } });
  });
});

describe("the chat object's schema", () => {
  it("its Drizzle tables and its SQL migrations agree column by column", async () => {
    const columns = await runInDurableObject(chatStub(env, newId()), (_o, state) => {
      migrate(state.storage);
      return Object.fromEntries(
        Object.values(chatSchema).map((table) => {
          const { name } = getTableConfig(table);
          const info = state.storage.sql
            .exec<{ name: string; notnull: number; pk: number }>(`PRAGMA table_info(${name})`)
            .toArray();
          return [name, info.map((c) => `${c.name}${c.notnull || c.pk ? "!" : ""}`).sort()];
        }),
      );
    });
    for (const table of Object.values(chatSchema)) {
      const config = getTableConfig(table);
      const primaryKeys = new Set(config.primaryKeys.flatMap((pk) => pk.columns.map((c) => c.name)));
      const declared = config.columns
        .map((c) => `${c.name}${c.notNull || c.primary || primaryKeys.has(c.name) ? "!" : ""}`)
        .sort();
      expect(columns[config.name], config.name).toEqual(declared);
    }
  });
});
