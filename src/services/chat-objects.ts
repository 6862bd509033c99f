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

/** A fresh route tag: 6 random bytes as 12 hex (chats.route_tag is UNIQUE; a clash, 1 in 2^48 per pair, is retried). */
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

/** The chat whose route tag `messageId` carries, or null (a transfer's message, no such chat). */
export async function chatOfMessageId(db: Database, messageId: string): Promise<string | null> {
  const tag = routeTagOf(messageId);
  const known = chatOfTag.get(tag);
  if (known) return known;
  const row = await db.select({ id: chats.id }).from(chats).where(eq(chats.routeTag, tag)).get();
  if (!row) return null;
  if (chatOfTag.size >= TAG_CACHE_MAX) chatOfTag.delete(chatOfTag.keys().next().value as string);
  chatOfTag.set(tag, row.id);
  return row.id;
}
