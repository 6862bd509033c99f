import { type SQL, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import type { Param } from "../db/prepared";
import { chatMembers, chats } from "../db/schema";
import { newId } from "../lib/ids";
import { newRouteTag } from "./chat-objects";

/**
 * Membership and direct-chat SQL shared by chats (creating and reading chats) and messages
 * (sends that check membership and open direct chats in their own batch). Its own module so
 * neither service imports the other for it.
 */

/** `<smaller id>:<larger id>`: the UNIQUE `chats.direct_key` that makes one direct chat per pair. */
export function directKeyOf(a: string, b: string): string {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}

/**
 * The statements that create the direct chat of two users if it is missing, for a batch: the chat
 * is inserted with ON CONFLICT DO NOTHING on the unique direct key (so concurrent creators, or a
 * transfer posting into it, end up with the one row that won), and both memberships only when
 * this batch's chat row is the one inserted. With `allowed`, nothing is created unless it holds
 * (the caller's checks, evaluated in the same transaction). `chatId` is SQL for the pair's chat id.
 */
export function directChatStatements(db: Database, creatorId: string, otherId: string, now: number, allowed: SQL = sql`1`) {
  const directKey = directKeyOf(creatorId, otherId);
  const id = newId(now);
  const thisChatInserted = sql`EXISTS (SELECT 1 FROM ${chats} WHERE ${chats.id} = ${id})`;
  const addMember = (userId: string) =>
    insertWhere(
      db,
      chatMembers,
      { chatId: id, userId, role: "member", lastReadSeq: 0, joinedAt: now, lastActivityAt: now },
      undefined,
      thisChatInserted,
    );
  const chatRow = {
    id,
    type: "direct",
    title: null,
    directKey,
    createdBy: creatorId,
    lastSeq: 0,
    lastActivityAt: now,
    lastMessage: null,
    routeTag: newRouteTag(),
    carriesTransfers: 0,
    createdAt: now,
  } as const;
  return {
    id,
    directKey,
    chatId: sql`(SELECT ${chats.id} FROM ${chats} WHERE ${chats.directKey} = ${directKey})`,
    statements: [
      insertWhere(db, chats, chatRow, undefined, allowed).onConflictDoNothing({ target: chats.directKey }),
      addMember(creatorId),
      addMember(otherId),
    ] as const,
  };
}
