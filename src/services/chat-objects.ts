import { eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { chats } from "../db/schema";
import { routeTagOf } from "../durable-objects/chat/append";
import { type Outcome, unwrap } from "../lib/errors";

/**
 * How the Worker reaches chat objects (durable-objects/chat/): one per chat, named by the chat
 * id. Nothing outside the chat module touches message storage; services call these stubs.
 */
export function chatStub(env: Env, chatId: string) {
  return env.CHAT.get(env.CHAT.idFromName(chatId));
}

export type ChatStub = ReturnType<typeof chatStub>;

/** A chat object's answer, a refusal thrown as its ApiError. */
export async function answer<T>(outcome: Promise<Outcome<T>>): Promise<T> {
  return unwrap(await outcome);
}

/** A fresh route tag: 6 random bytes as 12 hex (a clash, 1 in 2^48 per pair, makes an edit try both chats: chatsOfMessageId). */
export function newRouteTag(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Route tag → chat id, learned once per isolate (a tag never changes owner), so editing or
 * deleting by message id reads the directory at most once per chat per isolate. Bounded: past
 * the cap the oldest entries go.
 */
const TAG_CACHE_MAX = 10_000;
const chatOfTag = new Map<string, string>();

/**
 * The chats whose route tag `messageId` carries: one, or none (a transfer's message, no such
 * chat). Tags are drawn at random by each chat's creator, so a clash (1 in 2^48 per pair) names
 * several, and the caller tries each; a tag naming one chat is cached.
 */
export async function chatsOfMessageId(db: Database, messageId: string): Promise<string[]> {
  const tag = routeTagOf(messageId);
  const known = chatOfTag.get(tag);
  if (known) return [known];
  const rows = await db.select({ id: chats.id }).from(chats).where(eq(chats.routeTag, tag)).limit(8);
  if (rows.length !== 1) return rows.map((row) => row.id);
  if (chatOfTag.size >= TAG_CACHE_MAX) chatOfTag.delete(chatOfTag.keys().next().value as string);
  chatOfTag.set(tag, rows[0]!.id);
  return [rows[0]!.id];
}
