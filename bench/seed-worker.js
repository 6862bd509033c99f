/**
 * Seeding that must run inside workerd (bench/world.ts), served only while the product has chat
 * objects (a `CHAT` binding; this worker binds the product's chat class by `scriptName`):
 * `POST /__bench-seed/import-legacy?chat=<chat id>&from=<seq>&to=<seq>` moves one page of a
 * chat's D1 history (`messages`, seq from..to) into its chat object through the object's own
 * `importLegacy`, as the migration Workflow does in a real deployment, and answers what it
 * returned. Not a probe: no scenario calls it.
 */
const json = (value, status = 200) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });

/** A D1 `messages` row (snake_case columns) as a chat object stores it: `toChatMessageRow` (services/chat-effects.ts) of the row Drizzle reads. */
function toChatMessageRow(row) {
  return Object.fromEntries(
    Object.entries(row)
      .filter(([column]) => column !== "chat_id")
      .map(([column, value]) => [column.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), value]),
  );
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname !== "/__bench-seed/import-legacy" || request.method !== "POST") return json({ error: "not found" }, 404);
    const chatId = url.searchParams.get("chat");
    const from = Number(url.searchParams.get("from"));
    const to = Number(url.searchParams.get("to"));
    const page = await env.DB.prepare("SELECT * FROM messages WHERE chat_id = ? AND seq BETWEEN ? AND ? ORDER BY seq")
      .bind(chatId, from, to)
      .all();
    const chat = env.CHAT.get(env.CHAT.idFromName(chatId));
    return json(await chat.importLegacy(chatId, from, to, page.results.map(toChatMessageRow)));
  },
};
