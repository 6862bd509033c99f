import { and, eq, type SQL, type SQLWrapper, sql } from "drizzle-orm";
import type { Database } from "./client";
import type { Param } from "./prepared";
import { chatMembers, realtimePresence } from "./schema";

/**
 * Realtime presence (docs/realtime.md, "Presence"): whether a user has an open socket, kept in
 * D1 so the hot paths read it inside the batch they already run and push only to users who can
 * receive. Written only by the user's RealtimeDO, which serializes that user's sockets; the
 * guarantee is that a socket whose upgrade answered before a request began is seen by it.
 */

/**
 * Records `userId` as connected or not as of `changedAt` (the object's strictly increasing
 * clock). Lands only over an older stamp, so a write delayed in flight cannot undo a newer one;
 * on an equal stamp "connected" wins (a needless push costs little, a skipped one a frame).
 * Returns whether it landed.
 */
export async function writePresence(db: Database, userId: string, connected: boolean, changedAt: number): Promise<boolean> {
  const landed = await db
    .insert(realtimePresence)
    .values({ userId, connected, changedAt })
    .onConflictDoUpdate({
      target: realtimePresence.userId,
      set: { connected: sql`excluded.connected`, changedAt: sql`excluded.changed_at` },
      setWhere: sql`excluded.changed_at > ${realtimePresence.changedAt} OR (excluded.changed_at = ${realtimePresence.changedAt} AND excluded.connected = 1)`,
    })
    .returning({ userId: realtimePresence.userId });
  return landed.length > 0;
}

/** SQL: `userId` (a value, a placeholder or a column) has an open socket, as a fact to read in a batch the request already runs. */
export const isConnectedSql = (userId: Param<string> | SQLWrapper) =>
  sql`EXISTS (SELECT 1 FROM ${realtimePresence} WHERE ${realtimePresence.userId} = ${userId} AND ${realtimePresence.connected} = 1)`.mapWith(
    Boolean,
  );

/** Join condition keeping only rows whose `userId` column names a user with an open socket. */
export const isConnected = (userId: SQLWrapper) => and(eq(realtimePresence.userId, userId), eq(realtimePresence.connected, true));

/**
 * The members of `chatId` (an id, or SQL for one such as the chat of a message) with an open
 * socket, as a query to run in the batch of the change they are told about: the pushes of edits,
 * deletes, read markers and member changes reach only them, like a send's.
 */
export const connectedMembersQuery = (db: Database, chatId: string | SQL) =>
  db
    .select({ userId: chatMembers.userId })
    .from(chatMembers)
    .innerJoin(realtimePresence, isConnected(chatMembers.userId))
    .where(eq(chatMembers.chatId, chatId));
