import { introspectWorkflowInstance, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { recordEntry } from "../../src/durable-objects/wallet/wallet-totals";
import { chatStub } from "../../src/services/chat-objects";
import { getRun, startRun } from "../../src/services/reconciliation/runs";
import { walletStub } from "../../src/services/wallets";
import type { ReconciliationOutput } from "../../src/workflows/reconciliation-workflow";
import { seedUser } from "../support/users";

/**
 * `npm run test:scale` (not part of `npm test`: seeding alone takes minutes). A reconciliation run
 * over WALLETS wallets and TRANSFERS posted transfers seeded straight into wallet storage, the
 * directory and the chat objects (the HTTP API would take hours), through the real Workflow.
 * Prints the figures docs/wallets.md quotes. SCALE_WALLETS / SCALE_TRANSFERS override the sizes.
 */
const sizes = env as unknown as Record<string, string>;
const WALLETS = Number(sizes.SCALE_WALLETS || 10_000);
const TRANSFERS = Number(sizes.SCALE_TRANSFERS || 100_000);
const GRANT = 1_000;
const SEED_CONCURRENCY = 32;

/** `seed` of every item, SEED_CONCURRENCY at a time. */
async function inParallel<T>(items: readonly T[], seed: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: SEED_CONCURRENCY }, async () => {
      while (next < items.length) await seed(items[next++]!);
    }),
  );
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
const userId = (i: number) => `6a0000aa${hex(i, 16)}`;
const transferId = (k: number) => `6a0000bb${hex(k, 16)}`;
const messageId = (k: number) => `6a0000cc${hex(k, 16)}`;
const chatId = (p: number) => `6a0000dd${hex(p, 16)}`;

/** A transfer, and its message's place: the pair's direct chat and its seq there. */
type Seeded = { k: number; sender: number; recipient: number; amount: number; chat: string; seq: number };
type SeededChat = { id: string; route: string; a: number; b: number; messages: number };

function transfers(): { all: Seeded[]; chats: SeededChat[] } {
  const perSender = Math.ceil(TRANSFERS / WALLETS);
  const chats = new Map<string, SeededChat>();
  const all = Array.from({ length: TRANSFERS }, (_, k) => {
    const sender = k % WALLETS;
    const j = Math.floor(k / WALLETS);
    // A different recipient for each of a sender's transfers, never the sender itself.
    const recipient = (sender + 1 + ((j * 997) % (WALLETS - 1 - perSender))) % WALLETS;
    const [a, b] = sender < recipient ? [sender, recipient] : [recipient, sender];
    const key = `${a}:${b}`;
    let chat = chats.get(key);
    if (!chat) {
      chat = { id: chatId(chats.size), route: hex(chats.size, 12), a, b, messages: 0 };
      chats.set(key, chat);
    }
    chat.messages += 1;
    return { k, sender, recipient, amount: 1 + (k % 7), chat: chat.id, seq: chat.messages };
  });
  return { all, chats: [...chats.values()] };
}

/**
 * The users and the pairs' direct chats in the D1 directory (marked as carrying transfers, as a
 * transfer marks them), with their members: each chat's object starts from this on its first call.
 */
async function seedDirectory(chats: SeededChat[], at: number) {
  const rows = (values: string[], insert: string) => {
    const statements: D1PreparedStatement[] = [];
    for (let i = 0; i < values.length; i += 400)
      statements.push(env.DB.prepare(`${insert} VALUES ${values.slice(i, i + 400).join(",")}`));
    return statements;
  };
  const users = Array.from(
    { length: WALLETS },
    (_, i) =>
      `('${userId(i)}', 'scale-${i}@example.com', 'Scale ${i}', 'scale ${i}', 'seeded$cannot-sign-in', 'user', 'active', ${at})`,
  );
  const chatRows = chats.map(
    (c) => `('${c.id}', 'direct', '${userId(c.a)}:${userId(c.b)}', '${userId(c.a)}', 0, ${at}, '${c.route}', 1, ${at})`,
  );
  const members = chats.flatMap((c) => [c.a, c.b].map((u) => `('${c.id}', '${userId(u)}', 'member', 0, ${at}, ${at})`));
  const statements = [
    ...rows(users, "INSERT INTO users (id, email, display_name, display_name_key, password_hash, role, status, created_at)"),
    ...rows(
      chatRows,
      "INSERT INTO chats (id, type, direct_key, created_by, last_seq, last_activity_at, route_tag, carries_transfers, created_at)",
    ),
    ...rows(members, "INSERT INTO chat_members (chat_id, user_id, role, last_read_seq, joined_at, last_activity_at)"),
  ];
  for (let i = 0; i < statements.length; i += 50) await env.DB.batch(statements.slice(i, i + 50));
}

/** A chat's transfer messages, in seq order, through the chat object's own call (what a credited transfer's wallet does). */
async function seedChat(chat: SeededChat, messages: readonly Seeded[], at: number) {
  const appended = await chatStub(env, chat.id).appendTransfers(
    chat.id,
    messages.map((t) => ({
      transferId: transferId(t.k),
      messageId: messageId(t.k),
      senderId: userId(t.sender),
      recipientId: userId(t.recipient),
      amount: t.amount,
      note: null,
      createdAt: at,
    })),
  );
  if (!appended.ok || appended.value.length !== messages.length)
    throw new Error(`seeding chat ${chat.id}: ${JSON.stringify(appended)}`);
}

/** One wallet's storage as the protocol would have left it: grant, transfers out (posted), credits in. */
async function seedWallet(i: number, outs: Seeded[], ins: Seeded[], at: number) {
  await runInDurableObject(walletStub(env, userId(i)), (_instance, state) =>
    state.storage.transactionSync(() => {
      const sql = state.storage.sql;
      let balance = 0;
      let seq = 0;
      const entry = (
        id: string,
        kind: "grant" | "transfer_out" | "transfer_in",
        amount: number,
        counterparty: string | null,
        message: string | null,
      ) => {
        balance += amount;
        seq += 1;
        sql.exec(
          "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          `${id.slice(0, 8)}ee${hex(seq, 6)}${id.slice(16)}`,
          id,
          kind,
          amount,
          balance,
          counterparty,
          message,
          at,
        );
        recordEntry(sql, kind, amount, balance);
      };
      sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, 0, ?, ?)", userId(i), at, at);
      entry(`6a0000ff${hex(i, 16)}`, "grant", GRANT, null, null);
      for (const t of outs) {
        entry(transferId(t.k), "transfer_out", -t.amount, userId(t.recipient), messageId(t.k));
        sql.exec(
          `INSERT INTO transfers_out (transfer_id, state, recipient_id, amount, sender_balance, recipient_balance, message_id, chat_id,
             response, created_at, void_at, retry_at, posted_at) VALUES (?, 'posted', ?, ?, ?, 0, ?, ?, '{}', ?, ?, ?, ?)`,
          transferId(t.k),
          userId(t.recipient),
          t.amount,
          balance,
          messageId(t.k),
          t.chat,
          at,
          at + 3_600_000,
          at,
          at,
        );
      }
      for (const t of ins) {
        entry(transferId(t.k), "transfer_in", t.amount, userId(t.sender), messageId(t.k));
        sql.exec(
          "INSERT INTO transfers_in (transfer_id, sender_id, amount, sender_balance, recipient_balance, message_id, chat_id, created_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
          transferId(t.k),
          userId(t.sender),
          t.amount,
          balance,
          messageId(t.k),
          t.chat,
          at,
        );
      }
      sql.exec("UPDATE wallet SET balance = ?", balance);
    }),
  );
}

describe(`a reconciliation run over ${WALLETS} wallets and ${TRANSFERS} transfers`, () => {
  it("completes with every step under the subrequest cap and the exact totals", async () => {
    const at = Date.now() - 3 * 24 * 3_600_000;
    const { all, chats } = transfers();
    const outs = new Map<number, Seeded[]>();
    const ins = new Map<number, Seeded[]>();
    for (const t of all) {
      outs.set(t.sender, [...(outs.get(t.sender) ?? []), t]);
      ins.set(t.recipient, [...(ins.get(t.recipient) ?? []), t]);
    }
    const inChat = new Map<string, Seeded[]>();
    for (const t of all) inChat.set(t.chat, [...(inChat.get(t.chat) ?? []), t]);
    const seedStart = Date.now();
    await seedDirectory(chats, at);
    await inParallel(chats, (chat) => seedChat(chat, inChat.get(chat.id) ?? [], at));
    await inParallel(
      Array.from({ length: WALLETS }, (_, i) => i),
      (i) => seedWallet(i, outs.get(i) ?? [], ins.get(i) ?? [], at),
    );
    const seedMs = Date.now() - seedStart;
    const admin = await seedUser({ role: "admin" });

    const runStart = Date.now();
    const { run } = await startRun(env, "manual", { actorId: admin.id, requestId: "test" });
    await using instance = await introspectWorkflowInstance(env.RECONCILIATION, run.id);
    await instance.waitForStatus("complete");
    const runMs = Date.now() - runStart;
    const output = (await instance.getOutput()) as ReconciliationOutput;
    const report = await getRun(env, run.id);
    const chatPages = (await env.DB.prepare("SELECT COUNT(*) AS n FROM reconciliation_chat_pages WHERE run_id = ?")
      .bind(run.id)
      .first<{ n: number }>())!.n;

    const moved = all.reduce((sum, t) => sum + t.amount, 0);
    console.log(
      JSON.stringify({
        wallets: WALLETS,
        transfers: TRANSFERS,
        credits_moved: moved,
        seed_ms: seedMs,
        run_ms: runMs,
        steps: output.steps,
        max_step_subrequests: output.maxStepSubrequests,
        pages: report.pagesDone,
        chats: chats.length,
        chat_pages: chatPages,
      }),
    );
    expect(report).toMatchObject({
      status: "completed",
      walletsChecked: WALLETS + 1,
      totalBalance: WALLETS * GRANT,
      totalGranted: WALLETS * GRANT,
      pendingTransfers: 0,
      inFlightAmount: 0,
      discrepancyCount: 0,
    });
    expect(output.maxStepSubrequests).toBeLessThan(1000);
    expect(output.maxStepSubrequests).toBeGreaterThan(200);
    // No wallet's aggregates differed, so no drill and no re-read: the tidy, one step per page of
    // chats and of wallets, and the finish.
    expect(chatPages).toBe(Math.floor(chats.length / 200) + 1);
    expect(output.steps).toBe(1 + chatPages + report.pagesDone + 1);
  });
});
