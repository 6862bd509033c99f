import { introspectWorkflow } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { chatStub } from "../../src/services/chat-objects";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import {
  allPages,
  expectKeyMoved,
  expectMovedExactly,
  legacyId,
  MESSAGE_COLUMNS,
  moved,
  objectRows,
  oldSend,
  runInProcess,
  runWorkflow,
  seedLegacyChat,
  seedLegacyKey,
  waitForMigration,
} from "./support";

const DAY = 24 * 60 * 60 * 1000;

describe("the chat migration moves a seeded D1 history", () => {
  it("exactly (every message, seq, marker and key), and a second run moves nothing", async () => {
    const big = await seedLegacyChat(1_234);
    const small = await seedLegacyChat(7, 3);
    const empty = await seedLegacyChat(0);
    // An object that started before the run, whose D1 marker an old Worker moved afterwards.
    const early = await seedLegacyChat(20);
    expect((await allPages(early)).length).toBe(1);
    await env.DB.prepare("UPDATE chat_members SET last_read_seq = 15 WHERE chat_id = ? AND user_id = ?")
      .bind(early.chatId, early.members[1]!.id)
      .run();
    const [alice, bob] = big.members;
    const stored = await seedLegacyKey(big, { seq: 1_001, userId: alice!.id, stored: true });
    const diedBefore = await seedLegacyKey(big, { seq: 1_002, userId: bob!.id, stored: false });
    const expired = await seedLegacyKey(small, {
      seq: 3,
      userId: small.members[0]!.id,
      stored: true,
      createdAt: Date.now() - DAY - 1,
    });

    const first = await runWorkflow({ messagesPerPage: 500 });
    expect(first).toMatchObject({ status: "completed", error: null, strays: 0, legacyGone: false });
    expect(moved(first)).toEqual({ keys: 2, walletKeys: 2, markers: 1, messages: 1_234 + 7 + 20 });
    for (const chat of [big, small, empty, early]) await expectMovedExactly(chat);
    await expectKeyMoved(big.chatId, alice!.id, stored);
    await expectKeyMoved(big.chatId, bob!.id, diedBefore);
    expect(await objectRows(small.chatId, "SELECT * FROM send_keys WHERE key = ?", expired.key)).toEqual([]);
    const transfers = await objectRows(big.chatId, "SELECT sender_id, count, amount FROM transfer_totals ORDER BY sender_id");
    expect(transfers.reduce((n, row) => n + Number(row.count), 0)).toBe(2);

    const second = await runWorkflow();
    expect(second).toMatchObject({ status: "completed", strays: 0 });
    expect(moved(second)).toEqual({ keys: 0, walletKeys: 0, markers: 0, messages: 0 });
    for (const chat of [big, small, empty, early]) await expectMovedExactly(chat);
  });
});

describe("the API keeps answering", () => {
  it("the same pages before, while and after the move; an edit made before the move stays", async () => {
    const chat = await seedLegacyChat(1_250);
    const [alice] = chat.members;
    const before = await allPages(chat);
    // A legacy message edited through the API before the migration: its chat is found in D1.
    const edited = legacyId(chat.chatId, 1_201);
    const patch = await call("PATCH", `/api/v1/messages/${edited}`, { token: alice!.token, body: { content: "edited before" } });
    expect(patch.status, patch.text).toBe(200);
    const afterEdit = await allPages(chat);
    expect(afterEdit).not.toEqual(before);

    // Half way: the isolate dies after the chat's second page.
    const half = await runInProcess({ tuning: { messagesPerPage: 500 }, crashAfter: `chat ${chat.chatId} 501` }).catch((e) => e);
    expect(String(half)).toContain("crashed after");
    const [meta] = await objectRows(chat.chatId, "SELECT imported_up_to FROM chat");
    expect(meta).toEqual({ imported_up_to: 1_000 });
    expect(await allPages(chat)).toEqual(afterEdit);

    const { output } = await runInProcess({ tuning: { messagesPerPage: 500 } });
    expect(output.continuedAs).toBeNull();
    expect(await allPages(chat)).toEqual(afterEdit);
    const [kept] = await objectRows(chat.chatId, "SELECT content, edited_at FROM messages WHERE id = ?", edited);
    expect(kept).toMatchObject({ content: "edited before" });
    // Every other message is D1's.
    const others = await objectRows(chat.chatId, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id != ? ORDER BY seq`, edited);
    const inD1 = await env.DB.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND id != ? ORDER BY seq`)
      .bind(chat.chatId, edited)
      .all();
    expect(others).toEqual(inD1.results);
  });

  it("a retry of an old key is answered its stored outcome before and after the move; another body under it is 409", async () => {
    const chat = await seedLegacyChat(30);
    const [alice, bob] = chat.members;
    const stored = await seedLegacyKey(chat, { seq: 29, userId: alice!.id, stored: true });
    const diedBefore = await seedLegacyKey(chat, { seq: 30, userId: bob!.id, stored: false });
    const retry = (who: typeof alice, seeded: typeof stored) =>
      call("POST", "/api/v2/messages", { token: who!.token, body: seeded.body, headers: { "Idempotency-Key": seeded.key } });

    const early = await retry(alice, stored);
    expect(early.status, early.text).toBe(201);
    expect(early.text).toBe(stored.responseBody);
    expect(early.headers.get("Idempotent-Replayed")).toBe("true");

    await runInProcess();
    await expectMovedExactly(chat);
    const late = await retry(bob, diedBefore);
    expect(late.status, late.text).toBe(201);
    expect(late.headers.get("Idempotent-Replayed")).toBe("true");
    expect(late.json.data).toMatchObject({ id: diedBefore.messageId, seq: 30, chatId: chat.chatId, content: "message 30" });
    expect((await retry(alice, stored)).text).toBe(stored.responseBody);
    const other = await oldSend(chat.chatId, "another body");
    const reused = await call("POST", "/api/v2/messages", {
      token: bob!.token,
      body: other.body,
      headers: { "Idempotency-Key": diedBefore.key },
    });
    expectError(reused, 409, "idempotency_key_reused");
    // Nothing was sent twice.
    expect(await objectRows(chat.chatId, "SELECT last_seq FROM chat")).toEqual([{ last_seq: 30 }]);
  });
});

describe("the migration survives crashes", () => {
  it("a crash after any step's work, before it is recorded, replayed or started afresh, ends exact", async () => {
    const tuning = { messagesPerPage: 300, chatsPerPage: 2, keysPerPage: 1 };
    const crashPoints = [() => "keys 1", () => "chats 1", (big: string) => `chat ${big} 1`, (big: string) => `chat ${big} 301`];
    for (const [i, crashPoint] of crashPoints.entries()) {
      const chats = [await seedLegacyChat(1_000), await seedLegacyChat(12), await seedLegacyChat(0)];
      const key = await seedLegacyKey(chats[0]!, { seq: 999, userId: chats[0]!.members[0]!.id, stored: false });
      const crashAfter = crashPoint(chats[0]!.chatId);
      const record = new Map<string, unknown>();
      await expect(runInProcess({ tuning, record, crashAfter })).rejects.toThrow(`crashed after ${crashAfter}`);
      // Odd rounds replay (recorded steps are not run again, the crashed one is); even rounds start a new instance.
      const again = await runInProcess({ tuning, record: i % 2 === 1 ? record : new Map() });
      expect(again.output.continuedAs).toBeNull();
      if (i % 2 === 1) expect(again.ran[0]).toBe(crashAfter);
      for (const chat of chats) await expectMovedExactly(chat);
      await expectKeyMoved(chats[0]!.chatId, chats[0]!.members[0]!.id, key);
    }
  });

  it("a page a crashed step left half stored is completed, not duplicated", async () => {
    const chat = await seedLegacyChat(800);
    const rows = await env.DB.prepare(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq BETWEEN 1 AND 500 ORDER BY seq`,
    )
      .bind(chat.chatId)
      .all();
    const half = rows.results.slice(0, 250).map((row) => camel(row));
    const stub = chatStub(env, chat.chatId);
    expect(await stub.importLegacy(chat.chatId, 1, 500, half as never)).toEqual({ importedUpTo: 0, inserted: 250 });
    const { output } = await runInProcess({ tuning: { messagesPerPage: 500 } });
    expect(output.totals.messages).toBe(550);
    await expectMovedExactly(chat);
  });

  it("a Workflow step that throws is retried by the engine and the run ends exact", async () => {
    const chat = await seedLegacyChat(60);
    await using introspector = await introspectWorkflow(env.CHAT_MIGRATION);
    await introspector.modifyAll(async (m) => {
      await m.disableRetryDelays();
      await m.mockStepError({ name: "chats 1" }, new Error("isolate died"), 1);
    });
    const run = await runWorkflow();
    expect(run).toMatchObject({ status: "completed", messages: 60 });
    await expectMovedExactly(chat);
  });

  it("past its step budget an instance hands on to a successor, and the chain ends exact", async () => {
    const chats = [await seedLegacyChat(950), await seedLegacyChat(3), await seedLegacyChat(4), await seedLegacyChat(0)];
    await seedLegacyKey(chats[0]!, { seq: 2, userId: chats[0]!.members[1]!.id, stored: true });
    const run = await runWorkflow({ stepsPerInstance: 4, messagesPerPage: 100, chatsPerPage: 2 });
    expect(run.status).toBe("completed");
    expect(run.instances).toBeGreaterThan(3);
    expect(run.currentInstance).toBe(`${run.id}-${run.instances}`);
    expect(moved(run)).toEqual({ keys: 1, walletKeys: 1, markers: 0, messages: 950 + 3 + 4 });
    for (const chat of chats) await expectMovedExactly(chat);
  });
});

describe("the admin API", () => {
  it("is admins only; 202 on a start, the run at GET, 404 for an unknown run, 400 for a malformed id", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    expectError(await call("POST", "/api/v1/admin/chat-migrations", { token: user.token }), 403, "insufficient_permissions");
    expectError(
      await call("GET", `/api/v1/admin/chat-migrations/${"a".repeat(24)}`, { token: user.token }),
      403,
      "insufficient_permissions",
    );
    expectError(await call("POST", "/api/v1/admin/chat-migrations"), 401, "authentication_required");
    expectError(await call("GET", `/api/v1/admin/chat-migrations/${"a".repeat(24)}`, { token: admin.token }), 404, "not_found");
    expectError(await call("GET", "/api/v1/admin/chat-migrations/nope", { token: admin.token }), 400, "validation_failed");

    const started = await call("POST", "/api/v1/admin/chat-migrations", { token: admin.token });
    expect(started.status, started.text).toBe(202);
    expect(started.json.data).toMatchObject({ status: "running", instances: 1, currentInstance: started.json.data.id });
    await waitForMigration(started.json.data.id);
    const done = await call("GET", `/api/v1/admin/chat-migrations/${started.json.data.id}`, { token: admin.token });
    expect(done.status).toBe(200);
    expect(done.json.data).toMatchObject({ id: started.json.data.id, status: "completed", messages: 0, error: null });
  });
});

/** A raw D1 row (snake_case) as the object's RPC takes it. */
function camel(row: Record<string, unknown>) {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), v]));
}

describe("D1 messages an old Worker wrote after a chat's object started", () => {
  // Last in this file: the stray stays in D1 and every later run would report it.
  it("are reported as strays, never moved over the object's own seqs", async () => {
    const chat = await seedLegacyChat(10);
    const [alice] = chat.members;
    expect((await allPages(chat)).length).toBe(1);
    const sent = await call("POST", "/api/v2/messages", {
      token: alice!.token,
      body: { chatId: chat.chatId, content: "new design" },
    });
    expect(sent.json.data.seq).toBe(11);
    // During a rolling deploy, an old Worker still appends to D1 at the seq it believes is next.
    await env.DB.prepare(
      "INSERT INTO messages (id, chat_id, seq, sender_id, type, content, created_at) VALUES (?, ?, 11, ?, 'text', 'old design', ?)",
    )
      .bind(legacyId(chat.chatId, 11), chat.chatId, alice!.id, Date.now())
      .run();
    const run = await runWorkflow();
    expect(run).toMatchObject({ status: "completed", strays: 1, messages: 10 });
    expect(await objectRows(chat.chatId, "SELECT content FROM messages WHERE seq = 11")).toEqual([{ content: "new design" }]);
  });
});
