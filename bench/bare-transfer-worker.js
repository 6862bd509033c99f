import { DurableObject } from "cloudflare:workers";

/**
 * The platform's floor for a credit transfer: issue 12's "bare Worker + wallet object + D1 doing
 * the same work", with no framework, no auth, no checks, no Idempotency-Key, no limits and no
 * recovery. `POST /__bare-transfer/pay?from=<user id>&to=<user id>&chat=<chat id>`:
 * 0. only with `chat=new` (the first transfer between two people): the chat's id is derived from
 *    the pair, and the append of step 4 creates that chat's object (no D1 query, as in the product);
 * 1. the Worker calls the sender's object (one per user, SQLite storage, funded on first use);
 * 2. the object debits in one storage transaction, refusing an overdraft;
 * 3. it credits the recipient's object, idempotently by transfer id (object → object);
 * 4. it appends the message with its `seq` to the chat's object (bench/bare-chat-worker.js's
 *    class, one per chat: the object the product's wallet posts a transfer's message into);
 * 5. it marks the transfer posted.
 * A probe, not a goal (bench/README.md): the product's transfers cannot beat it on the same machine
 * except by sharing work between requests (group commit).
 */
export class BareWallet extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS wallet (id INTEGER PRIMARY KEY CHECK (id = 1), balance INTEGER NOT NULL)");
    sql.exec(
      "CREATE TABLE IF NOT EXISTS entries (transfer_id TEXT PRIMARY KEY, amount INTEGER NOT NULL, posted INTEGER NOT NULL DEFAULT 0)",
    );
    sql.exec("INSERT OR IGNORE INTO wallet (id, balance) VALUES (1, 1000000000)");
  }

  /** Nothing: the constructor has created (and funded) this wallet's storage. */
  open() {
    return true;
  }

  async pay(transferId, senderId, recipientId, chatId, amount) {
    const sql = this.ctx.storage.sql;
    const debited = this.ctx.storage.transactionSync(() => {
      const { balance } = sql.exec("SELECT balance FROM wallet WHERE id = 1").one();
      if (balance < amount) return false;
      sql.exec("UPDATE wallet SET balance = balance - ? WHERE id = 1", amount);
      sql.exec("INSERT INTO entries (transfer_id, amount) VALUES (?, ?)", transferId, -amount);
      return true;
    });
    if (!debited) return { ok: false };
    await this.env.BARE_WALLET.get(this.env.BARE_WALLET.idFromName(recipientId)).credit(transferId, amount);
    const chat = this.env.BARE_CHAT.get(this.env.BARE_CHAT.idFromName(chatId));
    const { seq } = await chat.append(transferId, senderId, "credit_transfer", "bare transfer");
    sql.exec("UPDATE entries SET posted = 1 WHERE transfer_id = ?", transferId);
    return { ok: true, seq };
  }

  credit(transferId, amount) {
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      const { rowsWritten } = sql.exec(
        "INSERT OR IGNORE INTO entries (transfer_id, amount, posted) VALUES (?, ?, 1)",
        transferId,
        amount,
      );
      if (rowsWritten > 0) sql.exec("UPDATE wallet SET balance = balance + ? WHERE id = 1", amount);
    });
    return true;
  }
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The direct chat of two people who have none yet: only its id, derived from the pair (as the
 * product's src/lib/direct-chat.ts derives it), so the transfer's append (step 4) is the first
 * call to that chat's object and creates its storage. Since chats are owned by their objects the
 * product's first transfer makes no D1 query either: the directory's row follows behind the answer
 * (its chat's outbox), which this floor leaves out.
 */
async function directChatId(a, b) {
  const [first, second] = a < b ? [a, b] : [b, a];
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${first}:${second}`)));
  return Array.from(digest.subarray(0, 12), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

const json = (value) => new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    // Seeding (bench/world.ts): each person's bare wallet is created before the load, as the
    // product's wallets are (by their grants), so no probe pays for creating its objects' storage.
    if (url.pathname === "/__bare-transfer/open" && request.method === "POST") {
      await env.BARE_WALLET.get(env.BARE_WALLET.idFromName(url.searchParams.get("user"))).open();
      return json({ ok: true });
    }
    if (url.pathname !== "/__bare-transfer/pay" || request.method !== "POST") return json({ error: "not found" });
    const from = url.searchParams.get("from");
    const to = url.searchParams.get("to");
    let chatId = url.searchParams.get("chat");
    if (chatId === "new") chatId = await directChatId(from, to);
    const sender = env.BARE_WALLET.get(env.BARE_WALLET.idFromName(from));
    const result = await sender.pay(newId(), from, to, chatId, 1);
    return new Response(JSON.stringify(result), {
      status: result.ok ? 201 : 409,
      headers: { "content-type": "application/json" },
    });
  },
};
