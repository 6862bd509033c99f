import { sql } from "drizzle-orm";
import type { Database } from "./client";
import { realtimePresence } from "./schema";

/**
 * Realtime presence (docs/realtime.md, "Presence"): whether a user has an open socket, kept in
 * D1 as an index for operators. No request path reads it: transfers and chats push to the
 * users' realtime objects, which know their own sockets. Written only by the user's RealtimeDO,
 * which serializes that user's sockets.
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
