import { and, asc, between, eq, gte, sql } from "drizzle-orm";
import { createDb } from "../../db/client";
import { chatMembers, chats, messageRoutes, messages } from "../../db/schema";
import type { LegacyMarker, LegacyProgress, LegacySendKey } from "../../durable-objects/chat/chat-types";
import { walletStub } from "../../durable-objects/wallet/wallet-stub";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { log } from "../../lib/log";
import { toChatMessageRow } from "../chat-effects";
import { chatStub } from "../chat-objects";

/**
 * The chat migration's steps (run.ts walks them): each reads a bounded page of D1, hands it to
 * the objects that keep it from now on, and returns a small summary (never rows). Each is
 * idempotent, so a step the engine retries, or a page a crashed step left half done, moves
 * nothing twice: objects store a row, a marker or a key only if they do not have it.
 */

/** Object calls in flight at once within a step. */
const CONCURRENCY = 10;

/** Runs `fn` over `items`, CONCURRENCY at a time. */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, worker));
}

/** Whether D1 still has the `messages` table (gone once migrations-after-chat-move/ is applied). */
export async function legacyTableExists(db: D1Database): Promise<boolean> {
  const row = await db.prepare("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'messages'").first();
  return row !== null;
}

// ------------------------------------------------------------------ messages

export type MessagePageResult = { importedUpTo: number; inserted: number };

/**
 * Moves seq `from`..`to` of one chat: one D1 batch records the page's message routes (first, so a
 * page its object has is always routed) and reads the page, then the chat object stores it. A
 * page that does not arrive whole (D1 lacks a seq) throws: the chat would read that gap from D1
 * for ever, and the drop must not happen until it is understood.
 */
export async function moveMessagePage(env: Env, chatId: string, from: number, to: number): Promise<MessagePageResult> {
  const db = createDb(env.DB);
  const inPage = and(eq(messages.chatId, chatId), between(messages.seq, from, to));
  const [, rows] = await db.batch([
    db
      .insert(messageRoutes)
      .select(db.select({ messageId: messages.id, chatId: messages.chatId }).from(messages).where(inPage))
      .onConflictDoNothing(),
    db.select().from(messages).where(inPage).orderBy(asc(messages.seq)),
  ]);
  const moved = await chatStub(env, chatId).importLegacy(chatId, from, to, rows.map(toChatMessageRow));
  if (!moved || moved.importedUpTo < to) {
    throw new Error(`chat ${chatId}: seq ${from}..${to} did not move whole (D1 has ${rows.length} of ${to - from + 1})`);
  }
  return moved;
}

// ------------------------------------------------------------------ chats

/** A chat with more legacy messages left than one page: moved in steps of its own. */
export type BigChat = { chatId: string } & Omit<LegacyProgress, "markersMoved">;

export type ChatPageResult = {
  /** The first chat of the next page (null: this was the last). */
  next: string | null;
  chats: number;
  markers: number;
  messages: number;
  /** D1 messages above a chat's legacy range (written by an old Worker after its object started): not moved. */
  strays: number;
  big: BigChat[];
};

/**
 * A page of chats from `from` (inclusive, id order): each one's markers moved forward into its
 * object (which starts from the directory if it has not yet), and each with at most
 * `messagesPerPage` legacy messages left moved whole here; bigger ones are returned for steps of
 * their own. Two D1 reads and at most two object calls and one D1 batch per chat.
 */
export async function moveChatPage(
  env: Env,
  from: string,
  chatsPerPage: number,
  messagesPerPage: number,
): Promise<ChatPageResult> {
  const db = createDb(env.DB);
  const listed = await db
    .select({
      id: chats.id,
      // Written out: Drizzle leaves columns unqualified in a one-table select, where `id` would be messages.id.
      d1Last: sql<number | null>`(SELECT max(m.seq) FROM messages m WHERE m.chat_id = chats.id)`,
    })
    .from(chats)
    .where(gte(chats.id, from))
    .orderBy(asc(chats.id))
    .limit(chatsPerPage + 1);
  const page = listed.slice(0, chatsPerPage);
  const result: ChatPageResult = {
    next: listed[chatsPerPage]?.id ?? null,
    chats: page.length,
    markers: 0,
    messages: 0,
    strays: 0,
    big: [],
  };
  if (page.length === 0) return result;
  const markers = await markersOf(env, page[0]!.id, page.at(-1)!.id);
  await eachLimited(page, async ({ id: chatId, d1Last }) => {
    const progress = await chatStub(env, chatId).importMarkers(chatId, markers.get(chatId) ?? []);
    if (!progress) throw new Error(`chat ${chatId} is in the directory but its object did not start`);
    result.markers += progress.markersMoved;
    result.strays += countStrays(chatId, d1Last, progress.legacyUpTo);
    const { legacyUpTo, importedUpTo } = progress;
    if (importedUpTo >= legacyUpTo) return;
    if (legacyUpTo - importedUpTo > messagesPerPage) result.big.push({ chatId, legacyUpTo, importedUpTo });
    else {
      // Awaited before the +=, which would otherwise add to the total as it was before the await.
      const { inserted } = await moveMessagePage(env, chatId, importedUpTo + 1, legacyUpTo);
      result.messages += inserted;
    }
  });
  result.big.sort((a, b) => (a.chatId < b.chatId ? -1 : 1));
  return result;
}

/** The D1 markers of the chats with ids in [first, last], by chat. */
async function markersOf(env: Env, first: string, last: string): Promise<Map<string, LegacyMarker[]>> {
  const rows = await createDb(env.DB)
    .select({ chatId: chatMembers.chatId, userId: chatMembers.userId, lastReadSeq: chatMembers.lastReadSeq })
    .from(chatMembers)
    .where(between(chatMembers.chatId, first, last));
  const byChat = new Map<string, LegacyMarker[]>();
  for (const { chatId, ...marker } of rows) byChat.set(chatId, [...(byChat.get(chatId) ?? []), marker]);
  return byChat;
}

function countStrays(chatId: string, d1Last: number | null, legacyUpTo: number): number {
  if (d1Last === null || d1Last <= legacyUpTo) return 0;
  log.warn("chat_migration.stray_messages", { chatId, legacyUpTo, d1Last });
  return d1Last - legacyUpTo;
}

// ------------------------------------------------------------------ send keys

/** The position after a key: its owner and the key (keys are walked in primary-key order). */
export type KeyCursor = [userId: string, key: string];

export type KeyPageResult = { next: KeyCursor | null; keys: number; walletKeys: number };

/**
 * A page of live message-send keys of the old design after `after` (D1 `idempotency_keys` rows
 * naming the message they created), each moved to its message's chat (the stored outcome) and
 * then to its owner's wallet (the registry): chat first, so a key the registry knows always has
 * its outcome where the retry goes. Keys past retention answer nothing any more and stay behind.
 */
export async function moveKeyPage(env: Env, after: KeyCursor | null, keysPerPage: number, now: number): Promise<KeyPageResult> {
  const rows = await env.DB.prepare(
    `SELECT k.user_id, k.key, k.fingerprint, k.response_status, k.response_body, k.message_id, k.created_at, m.chat_id
       FROM idempotency_keys k JOIN messages m ON m.id = k.message_id
      WHERE k.outcome_in IS NULL AND k.created_at >= ?1 AND (?2 IS NULL OR (k.user_id, k.key) > (?2, ?3))
      ORDER BY k.user_id, k.key LIMIT ?4`,
  )
    .bind(now - IDEMPOTENCY_RETENTION_MS, after?.[0] ?? null, after?.[1] ?? null, keysPerPage)
    .all<KeyRow>();
  const keys = rows.results;
  const result: KeyPageResult = { next: null, keys: 0, walletKeys: 0 };
  await eachLimited([...group(keys, (k) => k.chat_id)], async ([chatId, list]) => {
    const stored = await chatStub(env, chatId).importSendKeys(chatId, list.map(toLegacySendKey));
    result.keys += stored ?? 0;
  });
  await eachLimited([...group(keys, (k) => k.user_id)], async ([userId, list]) => {
    const registered = list.map((k) => ({
      key: k.key,
      fingerprint: k.fingerprint,
      target: `chat:${k.chat_id}`,
      createdAt: k.created_at,
    }));
    const added = await walletStub(env, userId).importMessageKeys(registered);
    result.walletKeys += added;
  });
  const last = keys.at(-1);
  if (keys.length === keysPerPage && last) result.next = [last.user_id, last.key];
  return result;
}

type KeyRow = {
  user_id: string;
  key: string;
  fingerprint: string;
  response_status: number | null;
  response_body: string | null;
  message_id: string;
  created_at: number;
  chat_id: string;
};

const toLegacySendKey = (k: KeyRow): LegacySendKey => ({
  userId: k.user_id,
  key: k.key,
  fingerprint: k.fingerprint,
  status: k.response_status,
  body: k.response_body,
  messageId: k.message_id,
  createdAt: k.created_at,
});

function group<T>(items: readonly T[], by: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(by(item), [...(groups.get(by(item)) ?? []), item]);
  return groups;
}
