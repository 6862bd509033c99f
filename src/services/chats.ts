import { and, asc, desc, eq, inArray, lt, type Placeholder, type SQL, type SQLWrapper, sql } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { batchPrepared, type Param, preparedPerDatabase } from "../db/prepared";
import { connectedMembersQuery, isConnectedSql } from "../db/presence";
import { type ChatMemberRow, type ChatRow, chatMembers, chats, type MessageRow, users } from "../db/schema";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError } from "../lib/errors";
import { ID_PATTERN, newId } from "../lib/ids";
import { type Chat, type MembershipRemoval, toChat } from "../schemas/chat";
import { type Message, toMessage } from "../schemas/message";
import { blockedInDirectChatSql, directChatStatements, directKeyOf, isMemberSql } from "./membership";
import { appendMessage, lastMessagesQuery } from "./messages";
import { assertActiveUser, assertCanSendTo, hasBlockedSql } from "./users";

/**
 * Chats, memberships and read markers. Decisions (also in the OpenAPI descriptions):
 * - Direct chats: exactly one per pair (UNIQUE `direct_key`); both people are `member`, nobody owns
 *   it; it never takes or loses members (400 `validation_failed`).
 * - Group chats: the creator is `owner`; only the owner adds or removes others; anyone may leave.
 *   When the owner leaves, ownership passes to the longest-standing member (earliest `joinedAt`).
 * - Adding, removing and leaving post a `system` message (sender: whoever acted), which moves
 *   `lastSeq` and counts as unread for the others. A new member sees the whole history, but
 *   only what follows their joining counts as unread.
 * - A chat you are not a member of is 404 `chat_not_found`, whether or not it exists.
 * - Blocks apply to direct chats only; inside a group, a block between two members does not stop
 *   either from posting (the group is shared by everybody in it).
 * - A suspended user may read, mark read, leave and remove members, but not create chats or
 *   add members (403 `account_suspended`).
 */

/**
 * D1 binds at most 100 parameters per statement: lists of ids and multi-row inserts are split
 * into chunks that stay under it and run together in one batch.
 */
export const MAX_BOUND_PARAMETERS = 100;

export function inChunks<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

const chatNotFound = (chatId: string) => new ApiError("chat_not_found", [`No chat ${chatId} among your chats`]);

/** The direct chat of two users, created if missing (see `directChatStatements`); one batch. */
export async function findOrCreateDirectChat(
  db: Database,
  creatorId: string,
  otherId: string,
  now: number = Date.now(),
): Promise<{ chat: ChatRow; created: boolean }> {
  const direct = directChatStatements(db, creatorId, otherId, now);
  const [, , , rows] = await db.batch([
    ...direct.statements,
    db.select().from(chats).where(eq(chats.directKey, direct.directKey)),
  ]);
  const chat = rows[0];
  if (!chat) throw new Error(`direct chat ${direct.directKey} missing right after its insert`);
  return { chat, created: chat.id === direct.id };
}

/** The chat and the caller's membership, or 404 `chat_not_found` (missing or not a member alike). */
export async function requireMember(
  db: Database,
  chatId: string,
  userId: string,
): Promise<{ chat: ChatRow; member: ChatMemberRow }> {
  const [chatRows, memberRows] = await db.batch([
    db.select().from(chats).where(eq(chats.id, chatId)),
    db
      .select()
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, userId))),
  ]);
  const chat = chatRows[0];
  const member = memberRows[0];
  if (!chat || !member) throw chatNotFound(chatId);
  return { chat, member };
}

/**
 * The members (in joining order) and last messages of the chats `chatIds` selects: ids, or a
 * subquery, so that they come in the same batch (one round trip, one snapshot) as the chats.
 */
function chatDetailQueries(db: Database, chatIds: string[] | SQLWrapper) {
  return [
    db
      .select()
      .from(chatMembers)
      .where(inArray(chatMembers.chatId, chatIds))
      .orderBy(asc(chatMembers.joinedAt), asc(chatMembers.userId)),
    lastMessagesQuery(db, chatIds),
  ] as const;
}

/** Chats as their viewer sees them: members, last message, unread count. */
function viewChats(
  rows: { chat: ChatRow; lastReadSeq: number }[],
  memberRows: ChatMemberRow[],
  lastMessageRows: MessageRow[],
): Chat[] {
  const members = new Map<string, ChatMemberRow[]>();
  for (const row of memberRows) {
    const list = members.get(row.chatId);
    if (list) list.push(row);
    else members.set(row.chatId, [row]);
  }
  const lastMessages = new Map(lastMessageRows.map((row) => [row.chatId, toMessage(row)]));
  return rows.map(({ chat, lastReadSeq }) =>
    toChat(chat, members.get(chat.id) ?? [], lastMessages.get(chat.id) ?? null, lastReadSeq),
  );
}

/** One chat as `viewerId` sees it, in one batch; 404 `chat_not_found` unless they are a member. */
async function viewChat(db: Database, chatId: string, viewerId: string): Promise<Chat> {
  const [chatRows, memberRows, lastMessageRows] = await db.batch([
    db.select().from(chats).where(eq(chats.id, chatId)),
    ...chatDetailQueries(db, [chatId]),
  ]);
  const chat = chatRows[0];
  const viewer = memberRows.find((row) => row.userId === viewerId);
  if (!chat || !viewer) throw chatNotFound(chatId);
  const [view] = viewChats([{ chat, lastReadSeq: viewer.lastReadSeq }], memberRows, lastMessageRows);
  if (!view) throw chatNotFound(chatId);
  return view;
}

export async function getChat(db: Database, chatId: string, viewerId: string): Promise<Chat> {
  return viewChat(db, chatId, viewerId);
}

/**
 * Opens (or finds) the direct chat with `memberId`. Checks as for a message: the caller is
 * active, the other user exists and has not blocked the caller.
 */
export async function createDirectChat(
  db: Database,
  callerId: string,
  memberId: string,
): Promise<{ chat: Chat; created: boolean }> {
  if (memberId === callerId) throw new ApiError("validation_failed", ["memberId: cannot open a direct chat with yourself"]);
  await assertCanSendTo(db, callerId, memberId);
  const { chat, created } = await findOrCreateDirectChat(db, callerId, memberId);
  return { chat: await viewChat(db, chat.id, callerId), created };
}

export const MAX_GROUP_INVITES = 100;

/**
 * A group chat owned by the caller with the given members: more than `maxMembers` people with the
 * caller → 409 `group_full`; unknown ids → 404 `user_not_found`; then a member who blocked the
 * caller → 403 `recipient_blocked` (a group must not bypass a block).
 */
export async function createGroupChat(
  db: Database,
  callerId: string,
  group: { title: string; memberIds: string[]; maxMembers: number },
): Promise<Chat> {
  const { title, maxMembers } = group;
  await assertActiveUser(db, callerId);
  const invited = [...new Set(group.memberIds)].filter((id) => id !== callerId);
  if (invited.length + 1 > maxMembers) throw groupFull(maxMembers, `memberIds: ${invited.length} others and you`);
  if (invited.length > 0) {
    // One bound parameter per statement is the caller's id (the block check).
    const [first, ...rest] = inChunks(invited, MAX_BOUND_PARAMETERS - 1).map((ids) =>
      db
        .select({ id: users.id, blocked: hasBlockedSql(sql`${users.id}`, callerId).as("blocked") })
        .from(users)
        .where(inArray(users.id, ids)),
    );
    const found = first ? (await db.batch([first, ...rest])).flat() : [];
    const known = new Set(found.map((row) => row.id));
    const missing = invited.filter((id) => !known.has(id));
    if (missing.length > 0)
      throw new ApiError(
        "user_not_found",
        missing.map((id) => `memberIds: no user with id ${id}`),
      );
    const blockers = found.filter((row) => row.blocked).map((row) => row.id);
    if (blockers.length > 0) throw groupBlocked("memberIds", blockers);
  }
  const now = Date.now();
  const id = newId(now);
  const member = (userId: string, role: "owner" | "member") => ({
    chatId: id,
    userId,
    role,
    lastReadSeq: 0,
    joinedAt: now,
    lastActivityAt: now,
  });
  const rows = [member(callerId, "owner"), ...invited.map((userId) => member(userId, "member"))];
  const rowsPerInsert = Math.floor(MAX_BOUND_PARAMETERS / Object.keys(member(callerId, "owner")).length);
  await db.batch([
    db.insert(chats).values({
      id,
      type: "group",
      title,
      directKey: null,
      createdBy: callerId,
      lastSeq: 0,
      lastActivityAt: now,
      createdAt: now,
    }),
    ...inChunks(rows, rowsPerInsert).map((chunk) => db.insert(chatMembers).values(chunk)),
  ]);
  return viewChat(db, id, callerId);
}

const chatCursorShape = z.object({ a: z.number().int(), c: z.string().regex(ID_PATTERN) });

/** The range of the caller's memberships a page covers (for the page and for its details' subquery). */
function chatPageWhere(userId: Param<string>, after: { a: Param<number>; c: Param<string> } | undefined) {
  return and(
    eq(chatMembers.userId, userId),
    after ? sql`(${chatMembers.lastActivityAt}, ${chatMembers.chatId}) < (${after.a}, ${after.c})` : undefined,
  );
}
const chatPageOrder = [desc(chatMembers.lastActivityAt), desc(chatMembers.chatId)];

/**
 * The caller's chats, most recent activity first (ties by id), from one backwards range scan of
 * `chat_members_user_activity_idx`. The cursor is the last item's (activity time, chat id). A
 * chat that gets a new message while you page moves to the top: it shows up again on a fresh
 * first page, not in the pages after your cursor.
 */
export function chatPageQuery(
  db: Database,
  userId: Param<string>,
  after: { a: Param<number>; c: Param<string> } | undefined,
  take: Param<number>,
) {
  return (
    db
      // `activity` aliased: chats has a last_activity_at too, and D1 batch results are keyed by column name.
      .select({
        chat: chats,
        lastReadSeq: chatMembers.lastReadSeq,
        activity: sql<number>`${chatMembers.lastActivityAt}`.mapWith(Number).as("member_activity"),
      })
      .from(chatMembers)
      .innerJoin(chats, eq(chats.id, chatMembers.chatId))
      .where(chatPageWhere(userId, after))
      .orderBy(...chatPageOrder)
      .limit(take)
  );
}

/**
 * The page's rows, members and last messages, for one batch: the details select the page's chat
 * ids by the same range scan as a subquery, so no second round trip waits for the first.
 * Exposed so a test can EXPLAIN each of them.
 */
export function chatListQueries(
  db: Database,
  userId: Param<string>,
  after: { a: Param<number>; c: Param<string> } | undefined,
  take: Param<number>,
) {
  const pageChatIds = db
    .select({ chatId: chatMembers.chatId })
    .from(chatMembers)
    .where(chatPageWhere(userId, after))
    .orderBy(...chatPageOrder)
    .limit(take);
  return [chatPageQuery(db, userId, after, take), ...chatDetailQueries(db, pageChatIds)] as const;
}

/** The chat list's queries built once per database: the first page, and a page after a cursor. */
const preparedChatList = preparedPerDatabase((db) => {
  const prepare = (after: { a: Placeholder; c: Placeholder } | undefined) => {
    const [page, members, lastMessages] = chatListQueries(db, sql.placeholder("userId"), after, sql.placeholder("take"));
    return [page.prepare(), members.prepare(), lastMessages.prepare()] as const;
  };
  return { first: prepare(undefined), after: prepare({ a: sql.placeholder("a"), c: sql.placeholder("c") }) };
});

export async function listChats(db: Database, userId: string, limit: number, cursor: string | undefined) {
  const after = cursor === undefined ? undefined : decodeCursor(cursor, chatCursorShape);
  const prepared = preparedChatList(db);
  const [rows, memberRows, lastMessageRows] = await batchPrepared(db, after ? prepared.after : prepared.first, {
    userId,
    take: limit + 1,
    ...after,
  });
  const page = toPage(
    rows,
    limit,
    (row) => row,
    (row) => ({ a: row.activity, c: row.chat.id }),
  );
  return { items: viewChats(page.items, memberRows, lastMessageRows), nextCursor: page.nextCursor };
}

function assertGroup(chat: ChatRow) {
  if (chat.type === "direct") {
    throw new ApiError("validation_failed", [
      "chatId: a direct chat always has exactly its two people; create a group chat instead",
    ]);
  }
}

/**
 * 409 `group_full`: a group holds at most `MAX_GROUP_MEMBERS` people (its owner included), which
 * bounds what one change costs to announce and one system message to fan out.
 */
function groupFull(maxMembers: number, detail: string): ApiError {
  return new ApiError("group_full", [`${detail}: a group chat holds at most ${maxMembers} members`]);
}

/** 403 `recipient_blocked`: these users blocked the caller, who may not put them in a group. */
function groupBlocked(field: string, blockerIds: string[]): ApiError {
  return new ApiError(
    "recipient_blocked",
    blockerIds.map((id) => `${field}: user ${id} does not accept messages from you`),
  );
}

/**
 * Adds `userId` to a group chat; the owner only. A user who blocked the caller: 403
 * `recipient_blocked`. Adding a current member changes nothing (200 with the chat). A group at
 * `maxMembers` is 409 `group_full`: the count is a condition of the insert itself, so two adds
 * racing for the last place cannot both win. Returns the chat as the caller sees it, the system
 * message if one was posted, and who to push it to (`notify`: members with an open socket).
 */
export async function addMember(
  db: Database,
  chatId: string,
  callerId: string,
  add: { userId: string; maxMembers: number },
): Promise<{ chat: Chat; message: Message | null; notify: string[] }> {
  const { userId, maxMembers } = add;
  const { chat, member } = await requireMember(db, chatId, callerId);
  assertGroup(chat);
  if (member.role !== "owner") throw new ApiError("insufficient_permissions", ["Only the owner of the group adds members"]);
  const actor = await assertActiveUser(db, callerId);
  const found = await db
    .select({ user: users, blocked: hasBlockedSql(userId, callerId).as("blocked") })
    .from(users)
    .where(eq(users.id, userId))
    .get();
  if (!found) throw new ApiError("user_not_found", [`No user with id ${userId}`]);
  if (found.blocked) throw groupBlocked("userId", [userId]);
  const now = Date.now();
  const [inserted, present] = await db.batch([
    insertWhere(
      db,
      chatMembers,
      {
        chatId,
        userId,
        role: "member",
        // History stays readable; only what follows the joining counts as unread.
        lastReadSeq: sql`(SELECT ${chats.lastSeq} FROM ${chats} WHERE ${chats.id} = ${chatId})`,
        joinedAt: now,
        lastActivityAt: now,
      },
      undefined,
      sql`(SELECT count(*) FROM ${chatMembers} WHERE ${chatMembers.chatId} = ${chatId}) < ${maxMembers}`,
    )
      .onConflictDoNothing()
      .returning({ userId: chatMembers.userId }),
    db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, userId))),
  ]);
  if (inserted.length === 0 && present.length === 0) throw groupFull(maxMembers, "userId");
  const posted =
    inserted.length > 0
      ? await postSystemMessage(db, chatId, callerId, `${actor.displayName} added ${found.user.displayName}`)
      : null;
  return { chat: await viewChat(db, chatId, callerId), message: posted?.message ?? null, notify: posted?.notify ?? [] };
}

/**
 * Removes `userId` from a group chat: the owner removes anyone, a member removes only themself
 * (leaving). If the owner leaves, the longest-standing member becomes owner in the same batch.
 * `notify`: the remaining members with an open socket, and the removed user if they have one
 * (their other devices, or the owner's decision).
 */
export async function removeMember(
  db: Database,
  chatId: string,
  callerId: string,
  userId: string,
): Promise<{ removal: MembershipRemoval; message: Message; notify: string[] }> {
  const { chat, member } = await requireMember(db, chatId, callerId);
  assertGroup(chat);
  const leaving = userId === callerId;
  if (!leaving && member.role !== "owner") {
    throw new ApiError("insufficient_permissions", ["Only the owner of the group removes other members; anyone may leave"]);
  }
  const [deleted, , owners, names] = await db.batch([
    db
      .delete(chatMembers)
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, userId)))
      .returning(),
    db
      .update(chatMembers)
      .set({ role: "owner" })
      .where(
        and(
          eq(chatMembers.chatId, chatId),
          sql`${chatMembers.userId} = (SELECT user_id FROM chat_members WHERE chat_id = ${chatId} ORDER BY joined_at, user_id LIMIT 1)`,
          sql`NOT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = ${chatId} AND role = 'owner')`,
        ),
      ),
    db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.role, "owner"))),
    db
      .select({ id: users.id, displayName: users.displayName, connected: isConnectedSql(users.id).as("connected") })
      .from(users)
      .where(inArray(users.id, [callerId, userId])),
  ]);
  const removed = deleted[0];
  if (!removed) throw new ApiError("user_not_found", [`userId: ${userId} is not a member of this chat`]);
  const nameOf = (id: string) => names.find((row) => row.id === id)?.displayName ?? "Someone";
  const text = leaving ? `${nameOf(callerId)} left` : `${nameOf(callerId)} removed ${nameOf(userId)}`;
  const { message, notify } = await postSystemMessage(db, chatId, callerId, text);
  const removedIsConnected = names.some((row) => row.id === userId && row.connected);
  return {
    removal: { chatId, userId, ownerId: owners[0]?.userId ?? null },
    message,
    notify: removedIsConnected ? [...notify, userId] : notify,
  };
}

/** Posts a `system` message; `notify`: the members with an open socket when it was posted. */
async function postSystemMessage(db: Database, chatId: string, actorId: string, content: string) {
  const posted = await appendMessage(db, { chatId, senderId: actorId, type: "system", content, createdAt: Date.now() });
  return { message: posted.message, notify: posted.created ? posted.connectedMemberIds : [] };
}

/**
 * Moves the caller's read marker forward to `seq` (never back: an older seq leaves it where it
 * is). A seq above the chat's `lastSeq` is 400. `notify`: the members with an open socket when
 * the marker moved, else nobody (a marker that did not move is no news).
 */
export async function markRead(db: Database, chatId: string, userId: string, seq: number) {
  const { chat } = await requireMember(db, chatId, userId);
  if (seq > chat.lastSeq) {
    throw new ApiError("validation_failed", [`seq: ${seq} is above the chat's lastSeq (${chat.lastSeq})`]);
  }
  const [moved, current, connected] = await db.batch([
    db
      .update(chatMembers)
      .set({ lastReadSeq: seq })
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, userId), lt(chatMembers.lastReadSeq, seq)))
      .returning({ lastReadSeq: chatMembers.lastReadSeq }),
    db
      .select({ lastReadSeq: chatMembers.lastReadSeq, lastSeq: chats.lastSeq })
      .from(chatMembers)
      .innerJoin(chats, eq(chats.id, chatMembers.chatId))
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, userId))),
    connectedMembersQuery(db, chatId),
  ]);
  const marker = current[0];
  if (!marker) throw chatNotFound(chatId);
  return {
    chatId,
    lastReadSeq: marker.lastReadSeq,
    unreadCount: Math.max(0, marker.lastSeq - marker.lastReadSeq),
    notify: moved.length > 0 ? connected.map((row) => row.userId) : [],
  };
}
