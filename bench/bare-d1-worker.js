/**
 * The platform's floor for D1 paths: a bare Worker (no framework, no auth, no checks) making the
 * one D1 round trip a product request cannot avoid, on the product's own D1 database. Its ratios
 * to the bare Worker bound what a product route with that round trip can reach on this machine:
 * - `GET /__bare-d1/read?id=<user id>`: one row by primary key (what `GET /users/me` reads);
 * - `POST /__bare-d1/append?chat=<chat id>&sender=<user id>`: a message appended with the next
 *   `seq` of its chat, in one batch (insert from the chat row, move the chat's `last_seq`): the
 *   least a message send writes.
 * Probes, not goals (bench/README.md).
 */
const json = (value) => new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/__bare-d1/read") {
      const row = await env.DB.prepare("SELECT * FROM users WHERE id = ?").bind(url.searchParams.get("id")).first();
      return json({ id: row?.id ?? null });
    }
    if (url.pathname === "/__bare-d1/append" && request.method === "POST") {
      const chatId = url.searchParams.get("chat");
      const now = Date.now();
      const [inserted] = await env.DB.batch([
        env.DB.prepare(
          "INSERT INTO messages (id, chat_id, seq, sender_id, type, content, created_at) SELECT ?, id, last_seq + 1, ?, 'text', ?, ? FROM chats WHERE id = ? RETURNING id, seq",
        ).bind(newId(), url.searchParams.get("sender"), "bare append", now, chatId),
        env.DB.prepare("UPDATE chats SET last_seq = last_seq + 1, last_activity_at = ? WHERE id = ?").bind(now, chatId),
      ]);
      return json(inserted.results[0] ?? null);
    }
    return json({ error: "not found" });
  },
};
