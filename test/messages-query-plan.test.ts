import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { drizzle } from "drizzle-orm/durable-sqlite";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { Log } from "../src/durable-objects/chat/append";
import { chatSchema, migrate } from "../src/durable-objects/chat/chat-schema";
import { SendKeys } from "../src/durable-objects/chat/keys";
import { Members } from "../src/durable-objects/chat/members";
import { Posting, pageRange } from "../src/durable-objects/chat/posting";
import { Roster } from "../src/durable-objects/chat/roster";
import { Summary } from "../src/durable-objects/chat/summary";
import { TransferReads } from "../src/durable-objects/chat/transfer-reads";
import { newId } from "../src/lib/ids";
import { chatStub } from "../src/services/chat-objects";
import { chatPageQuery } from "../src/services/chats";

const db = createDb(env.DB);

/**
 * Every statement a chat object runs for a send (keyed, with a reply and a client id), a
 * transfer's message, a page, an edit, a marker and the directory summary, as Drizzle sent it to
 * the object's SQLite (captured by its logger), with EXPLAIN QUERY PLAN of each.
 */
async function chatObjectPlans(): Promise<{ query: string; plan: string }[]> {
  const chatId = newId();
  return runInDurableObject(chatStub(env, chatId), (_instance, state) => {
    migrate(state.storage);
    const queries: { query: string; params: unknown[] }[] = [];
    const chatDb = drizzle(state.storage, {
      schema: chatSchema,
      logger: { logQuery: (query, params) => queries.push({ query, params }) },
    });
    const members = new Members(chatDb);
    const log = new Log(chatDb, members);
    const keys = new SendKeys(chatDb);
    const posting = new Posting(log, members, keys, state.storage.kv);
    const roster = new Roster(chatDb, log, members);
    const noEffects = { writeSummary: async () => {}, tellUsers: async () => {} };
    const [alice, bob] = [newId(), newId()];
    roster.create(
      {
        chatId,
        type: "direct",
        title: null,
        createdBy: alice,
        memberIds: [alice, bob],
        routeTag: "0123456789ab",
        at: 1,
        limits: null,
        requesterId: null,
      },
      { suspended: {}, online: {}, versions: {}, blocks: [] },
    );
    queries.length = 0;
    const meta = () => log.meta()!;
    const text = {
      chatId,
      senderId: alice,
      content: "hi",
      replyToMessageId: null,
      clientMessageId: null,
      key: null,
      ratePerMinute: 1000,
      refusal: null,
    };
    const first = posting.send(meta(), text, Date.now());
    const firstId = first.ok ? JSON.parse(first.value.body).data.id : "";
    posting.send(
      meta(),
      { ...text, replyToMessageId: firstId, clientMessageId: "c1", key: { key: "k", fingerprint: "f" } },
      Date.now(),
    );
    const transfer = {
      transferId: newId(),
      messageId: newId(),
      senderId: bob,
      recipientId: alice,
      amount: 5,
      note: null,
      createdAt: 1,
    };
    posting.appendTransfers(meta(), [transfer]);
    const [from, to] = pageRange(meta().lastSeq, { order: "desc", seq: null, take: 51 });
    log.range(from, to);
    posting.editable(meta(), alice, log.byId(firstId));
    log.update(firstId, { content: "edited", editedAt: 2 });
    posting.markRead(meta(), bob, 1);
    new Summary(chatDb, log, members, roster, new TransferReads(chatDb), noEffects).owed();
    keys.expire(Date.now());
    return queries.map(({ query, params }) => ({
      query,
      plan: state.storage.sql
        .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...params)
        .toArray()
        .map((row) => row.detail)
        .join(" | "),
    }));
  });
}

describe("chat object query plans", () => {
  it("a send, a transfer's message, a page, an edit, a marker and the summary look rows up by key or index, never scan messages or keys", async () => {
    const plans = await chatObjectPlans();
    expect(plans.length).toBeGreaterThan(15);
    for (const { query, plan } of plans) {
      expect(plan, query).not.toMatch(/SCAN (messages|send_keys|transfer_totals|blocks)\b/);
      expect(plan, query).not.toContain("TEMP B-TREE");
    }
    const page = plans.find(({ query }) => /between/i.test(query));
    expect(page?.plan).toMatch(/SEARCH messages USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/);
  });
});

describe("chat list query plan", () => {
  for (const [name, after] of [
    ["first page", undefined],
    ["next page", { a: Date.now(), c: newId() }],
  ] as const) {
    it(`${name}: the caller's memberships by chat_members_user_activity_idx, each chat by primary key; no table scan`, async () => {
      const { sql, params } = chatPageQuery(db, newId(), after, 51).toSQL();
      const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...params)
        .all<{ detail: string }>();
      const details = result.results.map((row) => row.detail).join("\n");
      expect(details).toMatch(/SEARCH chat_members USING (COVERING )?INDEX chat_members_user_activity_idx \(user_id=\?/);
      expect(details).toMatch(/SEARCH chats USING INDEX sqlite_autoindex_chats_1 \(id=\?\)/);
      expect(details).not.toMatch(/SCAN (chat_members|chats)\b/);
    });
  }

  it("one statement: the page's member previews read each page chat's own members by its primary key, never a scan", async () => {
    const { sql, params } = chatPageQuery(db, newId(), { a: Date.now(), c: newId() }, 51).toSQL();
    const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...params)
      .all<{ detail: string }>();
    const details = result.results.map((row) => row.detail).join("\n");
    expect(details).toMatch(/CORRELATED SCALAR SUBQUERY/);
    expect(details).toMatch(/SEARCH p USING INDEX sqlite_autoindex_chat_members_1 \(chat_id=\?\)/);
    expect(details).not.toMatch(/SCAN (chat_members|chats|messages)\b/);
  });
});
