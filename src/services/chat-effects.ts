import { and, asc, eq, inArray, isNull, sql } from "drizzle-orm";
import { createDb, type Database } from "../db/client";
import { blocks, chatMembers, chats, idempotencyKeys, type MessageRow, messages, users } from "../db/schema";
import type { ChatMessageRow } from "../durable-objects/chat/chat-schema";
import type { ChatSnapshot } from "../durable-objects/chat/chat-types";
import type { ChatEffects, DirectorySummary } from "../durable-objects/chat/effects";
import { fanOut } from "./realtime";

/**
 * What a chat object reaches outside its own storage, bound to this deployment: the D1 directory
 * (its snapshot once, its summary behind the answers, the legacy history), and realtime frames.
 * Handed to every ChatDO by the Worker's entry (src/index.ts).
 */
export function chatEffects(env: Env): ChatEffects {
  const db = () => createDb(env.DB);
  return {
    loadSnapshot: (chatId) => loadChatSnapshot(db(), chatId),
    writeSummary: (summary) => writeDirectorySummary(db(), summary),
    push: async (userIds, events) => (await fanOut(env, userIds, events)).unreached,
    legacyMessages: async (chatId, fromSeq, toSeq) =>
      (
        await db()
          .select()
          .from(messages)
          .where(and(eq(messages.chatId, chatId), sql`${messages.seq} BETWEEN ${fromSeq} AND ${toSeq}`))
          .orderBy(asc(messages.seq))
      ).map(toChatMessageRow),
    legacyMessage: async (chatId, messageId) => {
      const row = await db()
        .select()
        .from(messages)
        .where(and(eq(messages.id, messageId), eq(messages.chatId, chatId)))
        .get();
      return row ? toChatMessageRow(row) : null;
    },
    legacySendKey: async (chatId, userId, key) => {
      const row = await db()
        .select({
          fingerprint: idempotencyKeys.fingerprint,
          status: idempotencyKeys.responseStatus,
          body: idempotencyKeys.responseBody,
          messageId: messages.id,
          createdAt: idempotencyKeys.createdAt,
        })
        .from(idempotencyKeys)
        .innerJoin(messages, eq(messages.id, idempotencyKeys.messageId))
        .where(
          and(
            eq(idempotencyKeys.userId, userId),
            eq(idempotencyKeys.key, key),
            isNull(idempotencyKeys.outcomeIn),
            eq(messages.chatId, chatId),
          ),
        )
        .get();
      return row ? { userId, key, ...row } : null;
    },
  };
}

/** A D1 message row as a chat object stores it (the chat id is the object's own). */
export function toChatMessageRow(row: MessageRow): ChatMessageRow {
  const { chatId: _, ...rest } = row;
  return rest;
}

/**
 * The chat as the directory knows it, in one batch: the row, its members with their markers and
 * the status index with its version, and (a direct chat) the blocks index between the two, each
 * pair stamped with the blocker's facts version. Null: no such chat. What is newer than the index
 * reaches the object from the owners' outboxes and moves it forward only.
 */
export async function loadChatSnapshot(db: Database, chatId: string): Promise<ChatSnapshot | null> {
  const memberIds = db.select({ id: chatMembers.userId }).from(chatMembers).where(eq(chatMembers.chatId, chatId));
  const [chatRows, memberRows, blockRows] = await db.batch([
    db.select().from(chats).where(eq(chats.id, chatId)),
    db
      .select({
        userId: chatMembers.userId,
        role: chatMembers.role,
        joinedAt: chatMembers.joinedAt,
        lastReadSeq: chatMembers.lastReadSeq,
        status: users.status,
        factsVersion: users.factsVersion,
      })
      .from(chatMembers)
      .leftJoin(users, eq(users.id, chatMembers.userId))
      .where(eq(chatMembers.chatId, chatId)),
    db
      .select({ blockerId: blocks.blockerId, blockedId: blocks.blockedId })
      .from(blocks)
      .where(and(inArray(blocks.blockerId, memberIds), inArray(blocks.blockedId, memberIds))),
  ]);
  const chat = chatRows[0];
  if (!chat) return null;
  const blocked = new Set(blockRows.map((b) => `${b.blockerId}:${b.blockedId}`));
  const pairs =
    chat.type === "direct" ? memberRows.flatMap((a) => memberRows.filter((b) => b !== a).map((b) => [a, b] as const)) : [];
  return {
    chatId: chat.id,
    type: chat.type,
    title: chat.title,
    createdBy: chat.createdBy,
    createdAt: chat.createdAt,
    routeTag: chat.routeTag,
    lastSeq: chat.lastSeq,
    lastActivityAt: chat.lastActivityAt,
    members: memberRows.map((m) => ({
      userId: m.userId,
      role: m.role,
      joinedAt: m.joinedAt,
      lastReadSeq: m.lastReadSeq,
      suspended: m.status === "suspended",
      online: false,
      factsVersion: m.factsVersion ?? 0,
    })),
    blocks: pairs.map(([a, b]) => ({
      blockerId: a.userId,
      blockedId: b.userId,
      blocked: blocked.has(`${a.userId}:${b.userId}`),
      version: a.factsVersion ?? 0,
    })),
  };
}

/**
 * The chat's summary and the members' markers that moved, in one batch: each only moves forward
 * (a write delayed in flight cannot undo a newer one). Rows written: the chat's, and one per
 * member whose marker moved (the sender's own, for a send); never one per member per message.
 */
export async function writeDirectorySummary(db: Database, summary: DirectorySummary): Promise<void> {
  const { chatId, lastSeq, lastMessage, lastActivityAt } = summary;
  await db.batch([
    db
      .update(chats)
      .set({
        lastMessage: sql`CASE WHEN ${lastSeq} >= ${chats.lastSeq} AND ${lastMessage} IS NOT NULL THEN ${lastMessage} ELSE ${chats.lastMessage} END`,
        lastSeq: sql`max(${chats.lastSeq}, ${lastSeq})`,
        lastActivityAt: sql`max(${chats.lastActivityAt}, ${lastActivityAt})`,
      })
      .where(eq(chats.id, chatId)),
    ...summary.markers.map((marker) =>
      db
        .update(chatMembers)
        .set({ lastReadSeq: sql`max(${chatMembers.lastReadSeq}, ${marker.lastReadSeq})` })
        .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, marker.userId))),
    ),
  ]);
}
