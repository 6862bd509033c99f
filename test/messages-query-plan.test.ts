import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { newId } from "../src/lib/ids";
import { chatListQueries, chatPageQuery } from "../src/services/chats";
import { messagePageQuery, type PagePosition, preparedChatSend, preparedCreditTransferAppend } from "../src/services/messages";

const db = createDb(env.DB);

async function plan(position: PagePosition): Promise<string[]> {
  const { sql, params } = messagePageQuery(db, newId(), position, 51).toSQL();
  const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...params)
    .all<{ detail: string }>();
  return result.results.map((row) => row.detail);
}

describe("message list query plan", () => {
  const positions: [string, PagePosition][] = [
    ["first page, newest first", { order: "desc", seq: null }],
    ["next page, newest first", { order: "desc", seq: 1000 }],
    ["catch-up, oldest first", { order: "asc", seq: 40 }],
  ];
  for (const [name, position] of positions) {
    it(`${name}: a range of messages_chat_seq_unique, no temp B-tree sort`, async () => {
      const details = await plan(position);
      expect(details.join("\n")).toMatch(/SEARCH messages USING INDEX messages_chat_seq_unique \(chat_id=\?( AND seq[<>]\?)?\)/);
      expect(details.join("\n")).not.toContain("TEMP B-TREE");
      expect(details.join("\n")).not.toMatch(/SCAN messages/);
    });
  }
});

describe("chat list query plan", () => {
  for (const [name, after] of [
    ["first page", undefined],
    ["next page", { a: Date.now(), c: newId() }],
  ] as const) {
    it(`${name}: walks chat_members_user_activity_idx backwards, then chats by primary key, no sort`, async () => {
      const { sql, params } = chatPageQuery(db, newId(), after, 51).toSQL();
      const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...params)
        .all<{ detail: string }>();
      const details = result.results.map((row) => row.detail).join("\n");
      expect(details).toMatch(/SEARCH chat_members USING (COVERING )?INDEX chat_members_user_activity_idx \(user_id=\?/);
      expect(details).toMatch(/SEARCH chats USING INDEX sqlite_autoindex_chats_1 \(id=\?\)/);
      expect(details).not.toContain("TEMP B-TREE");
    });
  }
});

describe("chat list details query plans", () => {
  it("members and last messages of the page come from index lookups of the page's chat ids, never a scan", async () => {
    const [, members, lastMessages] = chatListQueries(db, newId(), { a: Date.now(), c: newId() }, 51);
    for (const query of [members, lastMessages]) {
      const { sql, params } = query.toSQL();
      const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...params)
        .all<{ detail: string }>();
      const details = result.results.map((row) => row.detail).join("\n");
      expect(details).toMatch(/SEARCH chat_members USING (COVERING )?INDEX chat_members_user_activity_idx \(user_id=\?/);
      expect(details).not.toMatch(/SCAN (chat_members|chats|messages)/);
    }
    const { sql, params } = lastMessages.toSQL();
    const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...params)
      .all<{ detail: string }>();
    expect(plan.results.map((row) => row.detail).join("\n")).toMatch(
      /SEARCH messages USING INDEX messages_chat_seq_unique \(chat_id=\? AND seq=\?\)/,
    );
  });
});

describe("append query plans", () => {
  const explain = async (query: { getQuery(): { sql: string; params: unknown[] } }) => {
    const { sql, params } = query.getQuery();
    const result = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...params.map(() => "x"))
      .all<{ detail: string }>();
    return result.results.map((row) => row.detail).join("\n");
  };

  it("every statement of a send and of a transfer's message looks rows up by index, never scans a table", async () => {
    const statements = [
      ...preparedChatSend(db)({ keyed: true, reply: true, clientId: true }).queries,
      ...preparedChatSend(db)({ keyed: false, reply: false, clientId: false }).queries,
      ...preparedCreditTransferAppend(db).queries,
    ];
    for (const statement of statements) {
      expect(await explain(statement)).not.toMatch(
        /SCAN (messages|chats|chat_members|idempotency_keys|users|blocks|realtime_presence)\b/,
      );
    }
  });

  it("the last read finds the message by id or by its 'same message' key through their indexes", async () => {
    const [read] = preparedCreditTransferAppend(db).queries.slice(-1);
    expect(read).toBeDefined();
    const plan = await explain(read as NonNullable<typeof read>);
    expect(plan).toMatch(/SEARCH messages USING INDEX sqlite_autoindex_messages_1 \(id=\?\)/);
    expect(plan).toMatch(/SEARCH messages USING INDEX messages_transfer_unique \(transfer_id=\?\)/);
  });

  it("the last read's columns have distinct names in every shape (D1 batch rows are keyed by column name)", async () => {
    const shapes = [false, true].flatMap((keyed) =>
      [false, true].flatMap((reply) => [false, true].map((clientId) => ({ keyed, reply, clientId }))),
    );
    const reads = [
      ...shapes.map((shape) => preparedChatSend(db)(shape).queries.at(-1)),
      preparedCreditTransferAppend(db).queries.at(-1),
    ];
    for (const read of reads) {
      const { sql, params } = (read as NonNullable<typeof read>).getQuery();
      const [columns] = await env.DB.prepare(sql)
        .bind(...params.map((param) => (typeof param === "number" ? param : "x")))
        .raw({ columnNames: true });
      expect(columns?.length).toBeGreaterThanOrEqual(15);
      expect(new Set(columns).size).toBe(columns?.length);
    }
  });
});
