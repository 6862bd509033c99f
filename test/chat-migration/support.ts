import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { walletStub } from "../../src/durable-objects/wallet/wallet-stub";
import { requestFingerprint } from "../../src/lib/idempotency";
import { newId } from "../../src/lib/ids";
import {
  type ChatMigrationOutput,
  firstParams,
  type MigrationTotals,
  runChatMigration,
  type StepFn,
  type Tuning,
} from "../../src/services/chat-migration/run";
import { getChatMigration, startChatMigration } from "../../src/services/chat-migration/runs";
import { chatStub, newRouteTag } from "../../src/services/chat-objects";
import { call } from "../support/http";
import { seedUser } from "../support/users";

/**
 * A deployment from before chat objects, written straight into D1 the way the old code wrote it
 * (chats with `last_seq`, members with markers, messages with contiguous seqs, message-send
 * `idempotency_keys`), and ways to run the migration and compare what moved.
 */

export type LegacyChat = { chatId: string; members: Awaited<ReturnType<typeof seedUser>>[]; count: number; base: number };

/** The columns a chat object keeps of a message, in the order both sides select them. */
export const MESSAGE_COLUMNS =
  "seq, id, sender_id, type, content, reply_to_message_id, client_message_id, transfer_id, transfer_recipient_id, transfer_amount, transfer_note, created_at, edited_at, deleted_at";

/**
 * A group chat of `members` (2 by default) with `count` messages written by a recursive CTE (fast
 * enough for 100,000): text alternating between two senders, every 7th edited, every 11th
 * deleted, every 13th a reply to the one before, every 17th with a clientMessageId, every 500th a
 * credit transfer. Markers: the first member read up to `count - 3`, the others 0.
 */
export async function seedLegacyChat(count: number, memberCount = 2): Promise<LegacyChat> {
  const members = await Promise.all(Array.from({ length: memberCount }, () => seedUser()));
  const [a, b] = [members[0]!, members[1]!];
  const chatId = newId();
  const base = Date.now() - 60 * 60 * 1000;
  const stmts = [
    env.DB.prepare(
      "INSERT INTO chats (id, type, title, created_by, last_seq, last_activity_at, route_tag, created_at) VALUES (?, 'group', 'Legacy', ?, ?, ?, ?, ?)",
    ).bind(chatId, a.id, count, base + count, newRouteTag(), base),
    ...members.map((m, i) =>
      env.DB.prepare(
        "INSERT INTO chat_members (chat_id, user_id, role, last_read_seq, joined_at, last_activity_at) VALUES (?, ?, ?, ?, ?, ?)",
      ).bind(chatId, m.id, i === 0 ? "owner" : "member", i === 0 ? Math.max(0, count - 3) : 0, base, base + count),
    ),
  ];
  if (count > 0) stmts.push(seedMessages(chatId, a.id, b.id, count, base));
  await env.DB.batch(stmts);
  return { chatId, members, count, base };
}

/** Legacy message ids: 18 hex of this chat, then the seq in 6 hex (24 hex, unique across chats). */
export const legacyIdPrefix = (chatId: string) => `${chatId.slice(0, 8)}${chatId.slice(14, 24)}`;
export const legacyId = (chatId: string, seq: number) => legacyIdPrefix(chatId) + seq.toString(16).padStart(6, "0");

function seedMessages(chatId: string, a: string, b: string, count: number, base: number): D1PreparedStatement {
  return env.DB.prepare(
    `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?3)
     INSERT INTO messages (id, chat_id, seq, sender_id, type, content, reply_to_message_id, client_message_id,
                           transfer_id, transfer_recipient_id, transfer_amount, transfer_note, created_at, edited_at, deleted_at)
     SELECT ?4 || printf('%06x', n), ?1, n, CASE n % 2 WHEN 1 THEN ?5 ELSE ?6 END,
            CASE WHEN n % 500 = 0 THEN 'credit_transfer' ELSE 'text' END,
            CASE WHEN n % 500 = 0 OR n % 11 = 0 THEN NULL ELSE 'message ' || n END,
            CASE WHEN n % 13 = 0 AND n % 500 != 0 THEN ?4 || printf('%06x', n - 1) END,
            CASE WHEN n % 17 = 0 AND n % 500 != 0 THEN 'client-' || n END,
            CASE WHEN n % 500 = 0 THEN ?4 || printf('%06x', n) END,
            CASE WHEN n % 500 = 0 THEN CASE n % 2 WHEN 1 THEN ?6 ELSE ?5 END END,
            CASE WHEN n % 500 = 0 THEN 5 END,
            CASE WHEN n % 1000 = 0 THEN 'rent' END,
            ?2 + n,
            CASE WHEN n % 7 = 0 AND n % 500 != 0 THEN ?2 + n + 1 END,
            CASE WHEN n % 11 = 0 AND n % 500 != 0 THEN ?2 + n + 2 END
       FROM s`,
  ).bind(chatId, base, count, legacyIdPrefix(chatId), a, b);
}

/** The v2 send of the old design that a key names, as the old code fingerprinted it. */
export async function oldSend(chatId: string, content: string) {
  const body = { chatId, content };
  return { body, fingerprint: await requestFingerprint("POST", "/api/v2/messages", body) };
}

/** A message-send key of the old design: its row names message `seq` of the chat; `stored` the answer kept (null: died before). */
export async function seedLegacyKey(
  chat: LegacyChat,
  options: { seq: number; userId: string; stored: boolean; createdAt?: number; content?: string },
) {
  const key = `legacy-${newId()}`;
  const { body, fingerprint } = await oldSend(chat.chatId, options.content ?? `message ${options.seq}`);
  const messageId = legacyId(chat.chatId, options.seq);
  const responseBody = options.stored
    ? JSON.stringify({
        isSuccess: true,
        statusCode: 201,
        data: { id: messageId },
        errors: null,
        timestamp: "2026-01-01T00:00:00.000Z",
      })
    : null;
  await env.DB.prepare(
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, response_status, response_body, message_id, outcome_in, created_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
  )
    .bind(
      options.userId,
      key,
      fingerprint,
      options.stored ? 201 : null,
      responseBody,
      messageId,
      options.createdAt ?? Date.now() - 60_000,
    )
    .run();
  return { key, body, fingerprint, messageId, responseBody };
}

// ------------------------------------------------------------------ running it

/**
 * The migration in-process, with the Workflow engine's semantics: a step's result is recorded
 * once it returns and a replay returns the record without running it. `crashAfter` throws right
 * after that step's work, before it is recorded (the isolate died): run again with the same
 * `record` to replay, or with a fresh one to start a new instance.
 */
export async function runInProcess(
  options: { tuning?: Partial<Tuning>; record?: Map<string, unknown>; crashAfter?: string } = {},
) {
  const record = options.record ?? new Map<string, unknown>();
  const ran: string[] = [];
  const step: StepFn = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (record.has(name)) return record.get(name) as T;
    const result = JSON.parse(JSON.stringify(await fn())) as T;
    ran.push(name);
    if (name === options.crashAfter) throw new Error(`crashed after ${name}`);
    record.set(name, result);
    return result;
  };
  let params = firstParams("in-process", options.tuning);
  let output: ChatMigrationOutput;
  // A successor runs right after its predecessor, each with steps of its own.
  for (const parts = [params]; ; ) {
    output = await runChatMigration(env, params, step, async (position, carried) => {
      params = { ...params, part: params.part + 1, position, carried };
      parts.push(params);
      record.clear();
      return `in-process-${params.part}`;
    });
    if (output.continuedAs === null) break;
  }
  return { output, ran, record };
}

/** Starts a run as the admin API does, and waits for it to end; returns its final state. */
export async function runWorkflow(tuning?: Partial<Tuning>, timeoutMs = 120_000) {
  const started = await startChatMigration(env, tuning);
  return waitForMigration(started.id, timeoutMs);
}

export async function waitForMigration(id: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await getChatMigration(env, id);
    if (run.status !== "running") return run;
    if (Date.now() > deadline) throw new Error(`chat migration ${id} still running after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export const moved = (totals: MigrationTotals) => ({
  keys: totals.keys,
  walletKeys: totals.walletKeys,
  markers: totals.markers,
  messages: totals.messages,
});

// ------------------------------------------------------------------ comparing

type Row = Record<string, SqlStorageValue>;

/** The chat object's state as raw rows (the object is not woken through its RPC, so nothing starts it). */
export function objectRows<T extends Row = Row>(chatId: string, query: string, ...bindings: unknown[]): Promise<T[]> {
  return runInDurableObject(chatStub(env, chatId), (_instance, state) => state.storage.sql.exec<T>(query, ...bindings).toArray());
}

/** Every message, marker and key of `chat` is in its object exactly as D1 has it (messages compared in slices of 5,000). */
export async function expectMovedExactly(chat: LegacyChat) {
  const { chatId, count } = chat;
  const [meta] = await objectRows<{ legacy_up_to: number; imported_up_to: number; last_seq: number }>(
    chatId,
    "SELECT legacy_up_to, imported_up_to, last_seq FROM chat",
  );
  expect(meta).toMatchObject({ legacy_up_to: count, imported_up_to: count });
  for (let from = 1; from <= count; from += 5000) {
    const to = Math.min(count, from + 4999);
    const inD1 = await env.DB.prepare(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq BETWEEN ? AND ? ORDER BY seq`,
    )
      .bind(chatId, from, to)
      .all();
    const here = await objectRows(
      chatId,
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq BETWEEN ? AND ? ORDER BY seq`,
      from,
      to,
    );
    expect(inD1.results.length).toBe(to - from + 1);
    expect(here).toEqual(inD1.results);
  }
  const routed = await env.DB.prepare(
    "SELECT count(*) AS n FROM messages m JOIN message_routes r ON r.message_id = m.id AND r.chat_id = m.chat_id WHERE m.chat_id = ?",
  )
    .bind(chatId)
    .first<{ n: number }>();
  expect(routed?.n).toBe(count);
  const d1Markers = await env.DB.prepare("SELECT user_id, last_read_seq FROM chat_members WHERE chat_id = ? ORDER BY user_id")
    .bind(chatId)
    .all();
  expect(await objectRows(chatId, "SELECT user_id, last_read_seq FROM members ORDER BY user_id")).toEqual(d1Markers.results);
}

/** A key moved exactly: in its chat with its answer, and in its owner's wallet registry. */
export async function expectKeyMoved(chatId: string, userId: string, seeded: Awaited<ReturnType<typeof seedLegacyKey>>) {
  const [row] = await objectRows<{ fingerprint: string; status: number; body: string; message_id: string }>(
    chatId,
    "SELECT fingerprint, status, body, message_id FROM send_keys WHERE user_id = ? AND key = ?",
    userId,
    seeded.key,
  );
  expect(row).toMatchObject({ fingerprint: seeded.fingerprint, status: 201, message_id: seeded.messageId });
  if (seeded.responseBody !== null) expect(row!.body).toBe(seeded.responseBody);
  else expect(JSON.parse(row!.body)).toMatchObject({ isSuccess: true, statusCode: 201, data: { id: seeded.messageId, chatId } });
  const registered = await runInDurableObject(walletStub(env, userId), (_instance, state) =>
    state.storage.sql.exec("SELECT fingerprint, target FROM message_keys WHERE key = ?", seeded.key).toArray(),
  );
  expect(registered).toEqual([{ fingerprint: seeded.fingerprint, target: `chat:${chatId}` }]);
}

/** Every page of the chat through the API, newest first, `limit` at a time (the data only: envelopes carry a timestamp). */
export async function allPages(chat: LegacyChat, limit = 100) {
  const token = chat.members[1]!.token;
  const pages: unknown[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `?limit=${limit}&cursor=${cursor}` : `?limit=${limit}`;
    const res = await call("GET", `/api/v1/messages/chat/${chat.chatId}${query}`, { token });
    expect(res.status, res.text).toBe(200);
    pages.push(res.json.data);
    cursor = res.json.data.nextCursor;
  } while (cursor);
  return pages;
}
