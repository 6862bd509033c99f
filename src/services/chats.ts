import { and, asc, desc, eq, inArray, type Placeholder, sql } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { batchPrepared, type Param, preparedPerDatabase } from "../db/prepared";
import { type ChatMemberRow, type ChatRow, chatMembers, chats, users } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError } from "../lib/errors";
import { ID_PATTERN, newId } from "../lib/ids";
import { type Chat, type MembershipRemoval, toChat } from "../schemas/chat";
import type { Message } from "../schemas/message";
import { answer, chatStub, newRouteTag } from "./chat-objects";
import { directChatStatements, directKeyOf } from "./membership";
import { assertActiveUser, assertCanSendTo, hasBlockedSql } from "./users";

/**
 * Chats, memberships and read markers: the directory in D1 (identity, members, one summary row
 * per chat) and each chat's object (durable-objects/chat/) for what happens inside it. Decisions (also in the OpenAPI descriptions):
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

/**
 * Pair → direct chat id, learned once per isolate (a pair's chat never changes), so a v1 send to
 * a known pair reads no D1. Bounded: past the cap the oldest entries go.
 */
const DIRECT_CACHE_MAX = 10_000;
const directChats = new Map<string, string>();

function rememberDirectChat(directKey: string, chatId: string): string {
  if (directChats.size >= DIRECT_CACHE_MAX) directChats.delete(directChats.keys().next().value as string);
  directChats.set(directKey, chatId);
  return chatId;
}

/** The pair's direct chat id, or null when they have none. */
export async function knownDirectChat(db: Database, a: string, b: string): Promise<string | null> {
  const directKey = directKeyOf(a, b);
  const cached = directChats.get(directKey);
  if (cached) return cached;
  const row = await db.select({ id: chats.id }).from(chats).where(eq(chats.directKey, directKey)).get();
  return row ? rememberDirectChat(directKey, row.id) : null;
}

/**
 * The direct chat of two users, created in the directory if missing (see `directChatStatements`);
 * one batch. Its object starts from the directory on its first call (durable-objects/chat/legacy.ts).
 */
export async function findOrCreateDirectChat(
  db: Database,
  creatorId: string,
  otherId: string,
  now: number = Date.now(),
): Promise<{ chatId: string; created: boolean }> {
  const direct = directChatStatements(db, creatorId, otherId, now);
  const [, , , rows] = await db.batch([
    ...direct.statements,
    db.select({ id: chats.id }).from(chats).where(eq(chats.directKey, direct.directKey)),
  ]);
  const chat = rows[0];
  if (!chat) throw new Error(`direct chat ${direct.directKey} missing right after its insert`);
  return { chatId: rememberDirectChat(direct.directKey, chat.id), created: chat.id === direct.id };
}

/**
 * The direct chat of a credited transfer (the wallet's effects): found or created as by
 * `findOrCreateDirectChat`, and marked as carrying transfers in the same batch, before the
 * transfer's message is appended into it (reconciliation walks the marked chats).
 */
export async function transferDirectChat(db: Database, senderId: string, recipientId: string, at: number): Promise<string> {
  const direct = directChatStatements(db, senderId, recipientId, at);
  const [, , , , rows] = await db.batch([
    ...direct.statements,
    markCarriesTransfers(db, direct.directKey),
    db.select({ id: chats.id }).from(chats).where(eq(chats.directKey, direct.directKey)),
  ]);
  const chat = rows[0];
  if (!chat) throw new Error(`direct chat ${direct.directKey} missing right after its insert`);
  return rememberDirectChat(direct.directKey, chat.id);
}

/** Marks the pair's direct chat (if it exists) as carrying transfers; changes nothing once it is. */
export function markCarriesTransfers(db: Database, directKey: Param<string>) {
  return db
    .update(chats)
    .set({ carriesTransfers: 1 })
    .where(and(eq(chats.directKey, directKey), eq(chats.carriesTransfers, 0)));
}

/** Opens the caller's direct chat with `otherId` after the checks of a message (active, exists, not blocked). */
export async function openDirectChat(db: Database, callerId: string, otherId: string): Promise<string> {
  await assertCanSendTo(db, callerId, otherId);
  return (await findOrCreateDirectChat(db, callerId, otherId)).chatId;
}

/** The chat and the caller's membership in the directory, or 404 `chat_not_found` (missing or not a member alike). */
async function requireMember(db: Database, chatId: string, userId: string): Promise<{ chat: ChatRow; member: ChatMemberRow }> {
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

/** One chat as `viewerId` sees it, current to its last commit: its object's view; 404 `chat_not_found` unless a member. */
export function getChat(env: Env, chatId: string, viewerId: string): Promise<Chat> {
  return answer(chatStub(env, chatId).view(chatId, viewerId));
}

/**
 * Opens (or finds) the direct chat with `memberId`. Checks as for a message: the caller is
 * active, the other user exists and has not blocked the caller.
 */
export async function createDirectChat(
  env: Env,
  db: Database,
  callerId: string,
  memberId: string,
): Promise<{ chat: Chat; created: boolean }> {
  if (memberId === callerId) throw new ApiError("validation_failed", ["memberId: cannot open a direct chat with yourself"]);
  await assertCanSendTo(db, callerId, memberId);
  const { chatId, created } = await findOrCreateDirectChat(db, callerId, memberId);
  return { chat: await getChat(env, chatId, callerId), created };
}

export const MAX_GROUP_INVITES = 100;

/**
 * A group chat owned by the caller with the given members: more than `maxMembers` people with the
 * caller → 409 `group_full`; unknown ids → 404 `user_not_found`; then a member who blocked the
 * caller → 403 `recipient_blocked` (a group must not bypass a block).
 */
export async function createGroupChat(
  env: Env,
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
      routeTag: newRouteTag(),
      createdAt: now,
    }),
    ...inChunks(rows, rowsPerInsert).map((chunk) => db.insert(chatMembers).values(chunk)),
  ]);
  return getChat(env, id, callerId);
}

const chatCursorShape = z.object({ a: z.number().int(), c: z.string().regex(ID_PATTERN) });

/** The range of the caller's chats a page covers (for the page and for its members' subquery). */
function chatPageWhere(userId: Param<string>, after: { a: Param<number>; c: Param<string> } | undefined) {
  return and(
    eq(chatMembers.userId, userId),
    after ? sql`(${chats.lastActivityAt}, ${chats.id}) < (${after.a}, ${after.c})` : undefined,
  );
}
const chatPageOrder = [desc(chats.lastActivityAt), desc(chats.id)];

/**
 * The caller's chats, most recent activity first (ties by id), from the directory's summary rows
 * (each chat's object writes its own behind its answers: within 1 s of a commit). The caller's
 * memberships are found by `chat_members_user_activity_idx`'s user prefix and sorted by their
 * chat's activity: no member row is touched per message. The cursor is the last item's
 * (activity time, chat id); a chat that gets a new message while you page moves to the top.
 */
export function chatPageQuery(
  db: Database,
  userId: Param<string>,
  after: { a: Param<number>; c: Param<string> } | undefined,
  take: Param<number>,
) {
  return db
    .select({ chat: chats, lastReadSeq: chatMembers.lastReadSeq })
    .from(chatMembers)
    .innerJoin(chats, eq(chats.id, chatMembers.chatId))
    .where(chatPageWhere(userId, after))
    .orderBy(...chatPageOrder)
    .limit(take);
}

/** The page's rows and its chats' members, for one batch (the members select the page by the same query). Exposed for EXPLAIN. */
export function chatListQueries(
  db: Database,
  userId: Param<string>,
  after: { a: Param<number>; c: Param<string> } | undefined,
  take: Param<number>,
) {
  const pageChatIds = db
    .select({ chatId: chatMembers.chatId })
    .from(chatMembers)
    .innerJoin(chats, eq(chats.id, chatMembers.chatId))
    .where(chatPageWhere(userId, after))
    .orderBy(...chatPageOrder)
    .limit(take);
  const members = db
    .select()
    .from(chatMembers)
    .where(inArray(chatMembers.chatId, pageChatIds))
    .orderBy(asc(chatMembers.joinedAt), asc(chatMembers.userId));
  return [chatPageQuery(db, userId, after, take), members] as const;
}

/** The chat list's queries built once per database: the first page, and a page after a cursor. */
const preparedChatList = preparedPerDatabase((db) => {
  const prepare = (after: { a: Placeholder; c: Placeholder } | undefined) => {
    const [page, members] = chatListQueries(db, sql.placeholder("userId"), after, sql.placeholder("take"));
    return [page.prepare(), members.prepare()] as const;
  };
  return { first: prepare(undefined), after: prepare({ a: sql.placeholder("a"), c: sql.placeholder("c") }) };
});

export async function listChats(db: Database, userId: string, limit: number, cursor: string | undefined) {
  const after = cursor === undefined ? undefined : decodeCursor(cursor, chatCursorShape);
  const prepared = preparedChatList(db);
  const [rows, memberRows] = await batchPrepared(db, after ? prepared.after : prepared.first, {
    userId,
    take: limit + 1,
    ...after,
  });
  const page = toPage(
    rows,
    limit,
    (row) => row,
    (row) => ({ a: row.chat.lastActivityAt, c: row.chat.id }),
  );
  const members = new Map<string, ChatMemberRow[]>();
  for (const row of memberRows) members.set(row.chatId, [...(members.get(row.chatId) ?? []), row]);
  const items = page.items.map(({ chat, lastReadSeq }) =>
    toChat(
      chat,
      members.get(chat.id) ?? [],
      chat.lastMessage === null ? null : (JSON.parse(chat.lastMessage) as Message),
      lastReadSeq,
    ),
  );
  return { items, nextCursor: page.nextCursor };
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
 * racing for the last place cannot both win. The directory decides; the chat object then takes
 * the member in with its system message (pushed by the object), and a repeat converges an object
 * that missed an earlier add. Returns the chat as the caller sees it.
 */
export async function addMember(
  env: Env,
  db: Database,
  chatId: string,
  callerId: string,
  add: { userId: string; maxMembers: number },
): Promise<Chat> {
  const { userId, maxMembers } = add;
  const { chat, member } = await requireMember(db, chatId, callerId);
  assertGroup(chat);
  if (member.role !== "owner") throw new ApiError("insufficient_permissions", ["Only the owner of the group adds members"]);
  const actor = await assertActiveUser(db, callerId);
  const found = await db
    .select({
      user: users,
      blocked: hasBlockedSql(userId, callerId).as("blocked"),
    })
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
  // The joining user's status as its owner holds it now, with its version (a later change reaches the chat from the owner's outbox).
  const facts = await walletStub(env, userId).factsFor([]);
  const joining = {
    userId,
    role: "member" as const,
    joinedAt: now,
    lastReadSeq: 0,
    suspended: (facts?.status ?? found.user.status) === "suspended",
    online: false,
    factsVersion: facts?.version ?? found.user.factsVersion,
  };
  const content = `${actor.displayName} added ${found.user.displayName}`;
  await answer(
    chatStub(env, chatId).changeMembers(chatId, { kind: "add", member: joining, actorId: callerId, content, at: now }),
  );
  return getChat(env, chatId, callerId);
}

/**
 * Removes `userId` from a group chat: the owner removes anyone, a member removes only themself
 * (leaving). If the owner leaves, the longest-standing member becomes owner in the same batch.
 * The chat object then lets the member go with its system message, pushed to the remaining
 * members and to the removed user (their other devices, or the owner's decision).
 */
export async function removeMember(
  env: Env,
  db: Database,
  chatId: string,
  callerId: string,
  userId: string,
): Promise<MembershipRemoval> {
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
      .select({ id: users.id, displayName: users.displayName })
      .from(users)
      .where(inArray(users.id, [callerId, userId])),
  ]);
  const removed = deleted[0];
  if (!removed) throw new ApiError("user_not_found", [`userId: ${userId} is not a member of this chat`]);
  const nameOf = (id: string) => names.find((row) => row.id === id)?.displayName ?? "Someone";
  const content = leaving ? `${nameOf(callerId)} left` : `${nameOf(callerId)} removed ${nameOf(userId)}`;
  const ownerId = owners[0]?.userId ?? null;
  const change = { kind: "remove" as const, userId, actorId: callerId, content, newOwnerId: ownerId, at: Date.now() };
  await answer(chatStub(env, chatId).changeMembers(chatId, change));
  return { chatId, userId, ownerId };
}

/**
 * Moves the caller's read marker forward to `seq` (never back: an older seq leaves it where it
 * is), in the chat's object; a seq above the chat's `lastSeq` is 400. The object pushes
 * `chat.read` when the marker moved, and the directory hears of it within a second.
 */
export function markRead(env: Env, chatId: string, userId: string, seq: number) {
  return answer(chatStub(env, chatId).markRead(chatId, userId, seq));
}
