import { DurableObject } from "cloudflare:workers";

/**
 * The platform's floor for the chat paths (issue 21): a bare Worker calling a bare chat object
 * (one per chat, SQLite storage, its own class: nothing of the product's), with no framework, no
 * auth, no membership, no key, no limit and no directory. Its ratios to the bare Worker bound
 * what a product route standing on the same object call can reach on this machine:
 * - `POST /__bare-chat/append?chat=<name>&sender=<user id>`: one message appended with the next
 *   `seq` of its chat in one storage transaction (move the chat's `last_seq`, insert the row):
 *   the least a send writes (`message-send`);
 * - `GET /__bare-chat/read?chat=<name>`: the newest 50 messages of the chat, as JSON: the least a
 *   list reads (`message-list-1k`, `message-list-100k`).
 * Seeding (bench/world.ts): `POST /__bare-chat/fill?chat=<name>&count=<n>` creates the chat with n
 * messages before the load, as the product's chats are seeded. bench/bare-transfer-worker.js
 * appends its transfers' messages through the same class (a Durable Object binding with
 * `scriptName`). Probes, not goals (bench/README.md).
 */
export class BareChat extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS chat (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL)");
    // A message is found by its seq (pages) and by its id (edits, replies): both are keys.
    sql.exec(
      "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, sender_id TEXT NOT NULL, type TEXT NOT NULL, content TEXT, created_at INTEGER NOT NULL)",
    );
    sql.exec("INSERT OR IGNORE INTO chat (id, last_seq) VALUES (1, 0)");
  }

  /** The message with the next seq, in one storage transaction. */
  append(id, senderId, type, content) {
    const sql = this.ctx.storage.sql;
    return this.ctx.storage.transactionSync(() => {
      const { seq } = sql.exec("UPDATE chat SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq AS seq").one();
      sql.exec(
        "INSERT INTO messages (seq, id, sender_id, type, content, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        seq,
        id,
        senderId,
        type,
        content,
        Date.now(),
      );
      return { id, seq };
    });
  }

  /** The newest `limit` messages, newest first. */
  newest(limit) {
    return this.ctx.storage.sql
      .exec("SELECT seq, id, sender_id, type, content, created_at FROM messages ORDER BY seq DESC LIMIT ?", limit)
      .toArray();
  }

  /** `count` more messages (seeding), in one transaction; the chat's last seq after them. */
  fill(senderId, count) {
    const sql = this.ctx.storage.sql;
    return this.ctx.storage.transactionSync(() => {
      const { last } = sql.exec("SELECT last_seq AS last FROM chat WHERE id = 1").one();
      sql.exec(
        `WITH RECURSIVE n(i) AS (SELECT 1 WHERE ?1 > 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO messages (seq, id, sender_id, type, content, created_at)
         SELECT ?2 + i, printf('bare%020x', ?2 + i), ?3, 'text', 'seeded message ' || (?2 + i), ?4 FROM n`,
        count,
        last,
        senderId,
        Date.now(),
      );
      return sql.exec("UPDATE chat SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq AS seq", count).one().seq;
    });
  }
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const json = (value, status = 200) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const chat = () => env.BARE_CHAT.get(env.BARE_CHAT.idFromName(url.searchParams.get("chat")));
    if (url.pathname === "/__bare-chat/append" && request.method === "POST") {
      return json(await chat().append(newId(), url.searchParams.get("sender"), "text", "bare append"), 201);
    }
    if (url.pathname === "/__bare-chat/read") return json({ items: await chat().newest(50) });
    if (url.pathname === "/__bare-chat/fill" && request.method === "POST") {
      const count = Number(url.searchParams.get("count") ?? 0);
      return json({ lastSeq: await chat().fill(url.searchParams.get("sender") ?? "bench", count) });
    }
    return json({ error: "not found" }, 404);
  },
};
