import { and, eq, inArray, sql } from "drizzle-orm";
import { createDb, type Database } from "../db/client";
import { isConnectedSql } from "../db/presence";
import { blocks, chatMembers, chats, users } from "../db/schema";
import type { ChatSnapshot } from "../durable-objects/chat/chat-types";
import type { ChatEffects, DirectorySummary } from "../durable-objects/chat/effects";
import { fanOut } from "./realtime";

/**
 * What a chat object reaches outside its own storage, bound to this deployment: the D1 directory
 * (its snapshot once, its summary behind the answers), and realtime frames.
 * Handed to every ChatDO by the Worker's entry (src/index.ts).
 */
export function chatEffects(env: Env): ChatEffects {
  const db = () => createDb(env.DB);
  return {
    loadSnapshot: (chatId) => loadChatSnapshot(db(), chatId),
    writeSummary: (summary) => writeDirectorySummary(db(), summary),
    push: async (userIds, events) => (await fanOut(env, userIds, events)).unreached,
  };
}

/**
 * The chat as the directory knows it, in one batch: the row, its members with their markers,
 * whether each is suspended or has an open socket, and the blocks between them. Null: no such chat.
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
        online: isConnectedSql(chatMembers.userId).as("online"),
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
      online: Boolean(m.online),
    })),
    blocks: blockRows.map((b): [string, string] => [b.blockerId, b.blockedId]),
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
