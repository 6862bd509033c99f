import { and, asc, desc, eq, inArray, type Placeholder, type SQLWrapper, sql } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { batchPrepared, type Param, preparedPerDatabase } from "../db/prepared";
import { chatMembers, chats, users } from "../db/schema";
import type { MemberLimits, NewChat } from "../durable-objects/chat/chat-types";
import type { Config } from "../lib/config";
import { decodeCursor, toPage } from "../lib/cursor";
import { directChatIdOf } from "../lib/direct-chat";
import { ApiError } from "../lib/errors";
import { ID_PATTERN, newId } from "../lib/ids";
import { type Chat, type ChatMember, type MembershipRemoval, toChat } from "../schemas/chat";
import type { Message } from "../schemas/message";
import { answer, chatStub, newRouteTag } from "./chat-objects";

/**
 * Chats and memberships. Each chat's object owns who is in it (durable-objects/chat/roster.ts):
 * creation, adds, removals and leaving are decided there, with their system message, and the D1
 * directory (the chat's row and the `chat_members` index for "my chats") follows from the chat's
 * outbox, as does each user's own count of their chats (the caps). No decision here reads the
 * index. Rules (also in the OpenAPI descriptions):
 * - Direct chats: exactly one per pair, its id derived from the pair (lib/direct-chat.ts); both
 *   people are `member`, nobody owns it; it never takes or loses members (400 `validation_failed`).
 * - Group chats: the creator is `owner`; only the owner adds or removes others; anyone may leave.
 *   When the owner leaves, ownership passes to the longest-standing member (earliest `joinedAt`).
 * - Adding, removing and leaving post a `system` message (sender: whoever acted), which moves
 *   `lastSeq` and counts as unread for the others. A new member sees the whole history, but
 *   only what follows their joining counts as unread. Removing someone already gone answers 200
 *   again and finishes whatever an earlier attempt left owed.
 * - A chat you are not a member of is 404 `chat_not_found`, whether or not it exists.
 * - Blocks apply to direct chats only; a user who blocked you cannot be put in your group.
 * - A suspended user may read, mark read, leave and remove members, but not create chats or
 *   add members (403 `account_suspended`).
 * - Caps: a user is in at most `MAX_CHATS_PER_USER` chats and owns at most `MAX_GROUPS_OWNED`
 *   groups (409 `chat_limit_reached`), counted by the user's own object (wallet/memberships.ts).
 */

/** The limits every membership change is checked against, from the configuration. */
export const memberLimitsOf = (config: Config): MemberLimits => ({
  maxMembers: config.maxGroupMembers,
  maxChatsPerUser: config.maxChatsPerUser,
  maxGroupsOwned: config.maxGroupsOwned,
});

/**
 * The command that creates the direct chat of two users (the creator first), capped by `limits`
 * and checked for the creator unless null (a transfer's chat: its credits moved already).
 */
async function directChatCommand(creatorId: string, otherId: string, limits: MemberLimits | null, at: number): Promise<NewChat> {
  return {
    requesterId: limits ? creatorId : null,
    chatId: await directChatIdOf(creatorId, otherId),
    type: "direct",
    title: null,
    createdBy: creatorId,
    memberIds: [creatorId, otherId],
    routeTag: newRouteTag(),
    at,
    limits,
  };
}

/**
 * The direct chat of a credited transfer (the wallet's effects): found or created in the pair's
 * chat object, whatever the caps (the credits moved already; the message must be posted). No D1
 * query once the chat exists.
 */
export async function transferDirectChat(env: Env, senderId: string, recipientId: string, at: number): Promise<string> {
  const cmd = await directChatCommand(senderId, recipientId, null, at);
  return (await answer(chatStub(env, cmd.chatId).create(cmd))).chat.id;
}

/**
 * Opens (or finds) the caller's direct chat with `otherId`: an existing one is answered by its
 * object alone; a new one only if the owners admit it (each person's own object: the caller is
 * active, the other user exists and has not blocked the caller, both people's caps). No D1 query.
 */
export async function openDirectChat(
  env: Env,
  callerId: string,
  otherId: string,
  limits: MemberLimits,
): Promise<{ chat: Chat; created: boolean }> {
  const chatId = await directChatIdOf(callerId, otherId);
  const stub = chatStub(env, chatId);
  const existing = await stub.view(chatId, callerId);
  if (existing.ok) return { chat: existing.value, created: false };
  return answer(stub.create(await directChatCommand(callerId, otherId, limits, Date.now())));
}

/** One chat as `viewerId` sees it, current to its last commit: its object's view; 404 `chat_not_found` unless a member. */
export function getChat(env: Env, chatId: string, viewerId: string): Promise<Chat> {
  return answer(chatStub(env, chatId).view(chatId, viewerId));
}

/** POST /chats {type: "direct"}: the pair's chat, 201 when this request created it, 200 when it existed. */
export function createDirectChat(
  env: Env,
  callerId: string,
  memberId: string,
  limits: MemberLimits,
): Promise<{ chat: Chat; created: boolean }> {
  if (memberId === callerId) throw new ApiError("validation_failed", ["memberId: cannot open a direct chat with yourself"]);
  return openDirectChat(env, callerId, memberId, limits);
}

export const MAX_GROUP_INVITES = 100;

/**
 * A group chat owned by the caller with the given members, created in its object first, which
 * asks each member's own object to admit it: more than `maxMembers` people with the caller → 409
 * `group_full`; the caller suspended → 403 `account_suspended`; unknown ids → 404
 * `user_not_found`; a member who blocked the caller → 403 `recipient_blocked` (a group must not
 * bypass a block); anyone past their caps (the caller's groups owned, anyone's chats) → 409
 * `chat_limit_reached`. No D1 query: the owners decide.
 */
export async function createGroupChat(
  env: Env,
  callerId: string,
  group: { title: string; memberIds: string[]; limits: MemberLimits },
): Promise<Chat> {
  const { title, limits } = group;
  const invited = [...new Set(group.memberIds)].filter((id) => id !== callerId);
  if (invited.length + 1 > limits.maxMembers) throw groupFull(limits.maxMembers, `memberIds: ${invited.length} others and you`);
  const now = Date.now();
  const cmd: NewChat = {
    chatId: newId(now),
    type: "group",
    title,
    createdBy: callerId,
    memberIds: [callerId, ...invited],
    routeTag: newRouteTag(),
    at: now,
    limits,
    requesterId: callerId,
  };
  return (await answer(chatStub(env, cmd.chatId).create(cmd))).chat;
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

/** How many members each chat of the list shows (the rest: `memberCount`, and the full list on GET /chats/{chatId}). */
export const MEMBER_PREVIEW = 5;

/**
 * A chat's first MEMBER_PREVIEW members by joining order, as one JSON array, read by the chat's
 * own `chat_members` rows (its primary key's chat_id prefix): the answer stays small whatever the
 * groups hold, and the list is one statement.
 */
const memberPreview = (
  chatId: SQLWrapper,
) => sql<string>`(SELECT json_group_array(json_object('userId', p.user_id, 'role', p.role, 'joinedAt', p.joined_at))
  FROM (SELECT user_id, role, joined_at FROM ${chatMembers} AS p WHERE p.chat_id = ${chatId}
        ORDER BY p.joined_at, p.user_id LIMIT ${sql.raw(String(MEMBER_PREVIEW))}) AS p)`;

/**
 * The caller's chats, most recent activity first (ties by id), from the directory's summary rows
 * (each chat's object writes its own behind its answers: within 1 s of a commit), each with its
 * member preview. The page is chosen first, from the caller's memberships (found by
 * `chat_members_user_activity_idx`'s user prefix) sorted by their chat's activity, reading ids
 * only; then only the page's chats are read whole and previewed (a preview per membership would
 * be computed before the sort). No member row is touched per message. The cursor is the last
 * item's (activity time, chat id); a chat that gets a new message while you page moves to the top.
 */
export function chatPageQuery(
  db: Database,
  userId: Param<string>,
  after: { a: Param<number>; c: Param<string> } | undefined,
  take: Param<number>,
) {
  const page = db
    .select({ chatId: chats.id, activity: chats.lastActivityAt, lastReadSeq: chatMembers.lastReadSeq })
    .from(chatMembers)
    .innerJoin(chats, eq(chats.id, chatMembers.chatId))
    .where(
      and(
        eq(chatMembers.userId, userId),
        after ? sql`(${chats.lastActivityAt}, ${chats.id}) < (${after.a}, ${after.c})` : undefined,
      ),
    )
    .orderBy(desc(chats.lastActivityAt), desc(chats.id))
    .limit(take)
    .as("page");
  return db
    .select({ chat: chats, lastReadSeq: page.lastReadSeq, members: memberPreview(page.chatId).as("member_preview") })
    .from(page)
    .innerJoin(chats, eq(chats.id, page.chatId))
    .orderBy(desc(page.activity), desc(page.chatId));
}

/** The chat list's query built once per database: the first page, and a page after a cursor. */
const preparedChatList = preparedPerDatabase((db) => {
  const prepare = (after: { a: Placeholder; c: Placeholder } | undefined) =>
    [chatPageQuery(db, sql.placeholder("userId"), after, sql.placeholder("take")).prepare()] as const;
  return { first: prepare(undefined), after: prepare({ a: sql.placeholder("a"), c: sql.placeholder("c") }) };
});

type PreviewMember = { userId: string; role: ChatMember["role"]; joinedAt: number };

/**
 * The caller's chats from the directory (one statement), each with a preview of its members (the
 * first MEMBER_PREVIEW by joining order) and `memberCount`: a page of 100 full groups stays small.
 */
export async function listChats(db: Database, userId: string, limit: number, cursor: string | undefined) {
  const after = cursor === undefined ? undefined : decodeCursor(cursor, chatCursorShape);
  const prepared = preparedChatList(db);
  const [rows] = await batchPrepared(db, after ? prepared.after : prepared.first, { userId, take: limit + 1, ...after });
  const page = toPage(
    rows,
    limit,
    (row) => row,
    (row) => ({ a: row.chat.lastActivityAt, c: row.chat.id }),
  );
  const items = page.items.map(({ chat, lastReadSeq, members }) =>
    toChat(
      chat,
      (JSON.parse(members) as PreviewMember[])
        .sort((x, y) => x.joinedAt - y.joinedAt || (x.userId < y.userId ? -1 : 1))
        .map((m) => ({ ...m, joinedAt: new Date(m.joinedAt).toISOString() })),
      chat.lastMessage === null ? null : (JSON.parse(chat.lastMessage) as Message),
      lastReadSeq,
    ),
  );
  return { items, nextCursor: page.nextCursor };
}

/**
 * 409 `group_full`: a group holds at most `MAX_GROUP_MEMBERS` people (its owner included), which
 * bounds what one change costs to announce and one system message to fan out.
 */
function groupFull(maxMembers: number, detail: string): ApiError {
  return new ApiError("group_full", [`${detail}: a group chat holds at most ${maxMembers} members`]);
}

/** Display names from the directory (their owner), for system messages, by id; "Someone" for an id with no account. */
async function namesOf(db: Database, ids: readonly string[]) {
  const rows = await db
    .select({ id: users.id, displayName: users.displayName })
    .from(users)
    .where(inArray(users.id, [...new Set(ids)]));
  return { name: (id: string) => rows.find((r) => r.id === id)?.displayName ?? "Someone" };
}

/**
 * Adds `userId` to a group chat, decided by the chat's object (roster.ts): the owner only (403),
 * a user who blocked the caller (403 `recipient_blocked`), a full group (409 `group_full`, the
 * place held in the chat so two adds racing for the last place cannot both win), the user's caps
 * (409 `chat_limit_reached`, counted by the user's object). Adding a current member changes
 * nothing (200 with the chat). The user's existence and blocks are their object's answer; the
 * directory is read only for the display names of the system message.
 */
export async function addMember(
  env: Env,
  db: Database,
  chatId: string,
  callerId: string,
  add: { userId: string; limits: MemberLimits },
): Promise<Chat> {
  const { userId, limits } = add;
  const names = await namesOf(db, [callerId, userId]);
  const cmd = {
    chatId,
    actorId: callerId,
    userId,
    content: `${names.name(callerId)} added ${names.name(userId)}`,
    at: Date.now(),
    limits,
  };
  return answer(chatStub(env, chatId).addMember(cmd));
}

/**
 * Removes `userId` from a group chat, in the chat's object: the owner removes anyone, a member
 * removes only themself (leaving); an owner who leaves hands the group to the longest-standing
 * member. From the answer on, the removed user reads nothing new, sends nothing and gets no frame
 * of the chat; the directory's index follows within a second. A repeat answers 200 again and
 * finishes what an earlier attempt left owed.
 */
export async function removeMember(
  env: Env,
  db: Database,
  chatId: string,
  callerId: string,
  userId: string,
): Promise<MembershipRemoval> {
  const names = await namesOf(db, [callerId, userId]);
  const cmd = {
    chatId,
    actorId: callerId,
    userId,
    names: { actor: names.name(callerId), user: names.name(userId) },
    at: Date.now(),
  };
  return answer(chatStub(env, chatId).removeMember(cmd));
}

/**
 * Moves the caller's read marker forward to `seq` (never back: an older seq leaves it where it
 * is), in the chat's object; a seq above the chat's `lastSeq` is 400. The object pushes
 * `chat.read` when the marker moved, and the directory hears of it within a second.
 */
export function markRead(env: Env, chatId: string, userId: string, seq: number) {
  return answer(chatStub(env, chatId).markRead(chatId, userId, seq));
}
