import { eq, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { type ChatRow, chatMembers, chats } from "../db/schema";
import { newId } from "../lib/ids";

/** `<smaller id>:<larger id>`: the UNIQUE `chats.direct_key` that makes one direct chat per pair. */
export function directKeyOf(a: string, b: string): string {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}

/**
 * The direct chat of two users, created if missing. Safe under races (both users creating it at
 * once, or a transfer posting into it): the chat is inserted with ON CONFLICT DO NOTHING on the
 * unique direct key and then read back, so everybody ends up with the one row that won. Both
 * memberships are written in the same batch, only when this call's chat row is the one inserted.
 * Direct chats have no owner: both people are `member`.
 */
export async function findOrCreateDirectChat(
  db: Database,
  creatorId: string,
  otherId: string,
  now: number = Date.now(),
): Promise<{ chat: ChatRow; created: boolean }> {
  const directKey = directKeyOf(creatorId, otherId);
  const existing = await db.select().from(chats).where(eq(chats.directKey, directKey)).get();
  if (existing) return { chat: existing, created: false };

  const id = newId(now);
  const addMember = (userId: string) =>
    // Columns in table order: chat_id, user_id, role, last_read_seq, joined_at, last_activity_at.
    db
      .insert(chatMembers)
      .select(sql`SELECT ${id}, ${userId}, 'member', 0, ${now}, ${now} WHERE EXISTS (SELECT 1 FROM chats WHERE id = ${id})`);
  const [, , , rows] = await db.batch([
    db
      .insert(chats)
      .values({
        id,
        type: "direct",
        title: null,
        directKey,
        createdBy: creatorId,
        lastSeq: 0,
        lastActivityAt: now,
        createdAt: now,
      })
      .onConflictDoNothing({ target: chats.directKey }),
    addMember(creatorId),
    addMember(otherId),
    db.select().from(chats).where(eq(chats.directKey, directKey)),
  ]);
  const chat = rows[0];
  if (!chat) throw new Error(`direct chat ${directKey} missing right after its insert`);
  return { chat, created: chat.id === id };
}
