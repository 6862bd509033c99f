import { and, asc, eq, gt } from "drizzle-orm";
import { createDb, type Database } from "../db/client";
import { chatMembers } from "../db/schema";
import type { ChatFact } from "../durable-objects/chat/chat-types";
import { log } from "../lib/log";
import { chatStub } from "./chat-objects";
import { knownDirectChat } from "./chats";

/**
 * What chat objects must know of the outside world, pushed to them when it changes
 * (ARCHITECTURE.md §10), so a send reads no D1: a block (the pair's direct chat), a suspension or
 * reinstatement, and a new realtime connection (all the user's chats). Bounded: the request tells
 * the first page of chats itself, within its own time (API.md: a suspension refuses the next send
 * within 1 s); a user with more chats, or a chat that did not answer, is told by the ChatFacts
 * Workflow, which walks the rest in pages and retries each page until every chat has heard.
 */
export const FACTS_PAGE = 100;
/** Chats told at once by one request or one Workflow step. */
const FACTS_CONCURRENCY = 16;

/** Who the Workflow tells what: the chats of `userId` after `afterChatId`, or the listed chats. */
export type ChatFactsParams = { facts: ChatFact[]; userId?: string; afterChatId?: string; chatIds?: string[] };

/** Tells each chat the facts; resolves to the chats that could not be told. */
export async function tellChats(env: Env, chatIds: readonly string[], facts: ChatFact[]): Promise<string[]> {
  const queue = [...chatIds];
  const failed: string[] = [];
  const worker = async () => {
    for (let chatId = queue.pop(); chatId !== undefined; chatId = queue.pop()) {
      try {
        await chatStub(env, chatId).applyFacts(facts);
      } catch (error) {
        failed.push(chatId);
        log.warn("chat.fact_failed", { chatId, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(FACTS_CONCURRENCY, queue.length) }, worker));
  return failed;
}

/** A page of the user's chat ids after `afterChatId`, in id order. */
export async function userChatPage(db: Database, userId: string, afterChatId: string | undefined): Promise<string[]> {
  const rows = await db
    .select({ chatId: chatMembers.chatId })
    .from(chatMembers)
    .where(and(eq(chatMembers.userId, userId), afterChatId ? gt(chatMembers.chatId, afterChatId) : undefined))
    .orderBy(asc(chatMembers.chatId))
    .limit(FACTS_PAGE);
  return rows.map((row) => row.chatId);
}

/**
 * Tells every chat of `userId` the facts: the first page now, the rest (and any chat that failed)
 * through the Workflow. Never throws: the change it reports has committed already.
 */
export async function tellUserChats(env: Env, userId: string, facts: ChatFact[]): Promise<void> {
  try {
    const first = await userChatPage(createDb(env.DB), userId, undefined);
    const failed = await tellChats(env, first, facts);
    if (failed.length > 0) await startFacts(env, { facts, chatIds: failed });
    if (first.length === FACTS_PAGE) await startFacts(env, { facts, userId, afterChatId: first.at(-1) });
  } catch (error) {
    log.error("chat.facts_failed", { userId, error });
    await startFacts(env, { facts, userId }).catch((e) => log.error("chat.facts_workflow_failed", { userId, error: e }));
  }
}

/** Tells the pair's direct chat (if they have one) about a block or its lifting. */
export async function tellBlock(env: Env, db: Database, blockerId: string, blockedId: string, blocked: boolean): Promise<void> {
  const chatId = await knownDirectChat(db, blockerId, blockedId);
  if (!chatId) return;
  const facts: ChatFact[] = [{ kind: "block", blockerId, blockedId, blocked }];
  const failed = await tellChats(env, [chatId], facts);
  if (failed.length > 0) await startFacts(env, { facts, chatIds: failed });
}

function startFacts(env: Env, params: ChatFactsParams) {
  return env.CHAT_FACTS.create({ params });
}
