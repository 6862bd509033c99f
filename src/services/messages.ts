import { and, asc, desc, eq, gt, lt, or, sql } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { chatMembers, chats, type MessageRow, messages } from "../db/schema";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError } from "../lib/errors";
import { ID_PATTERN, newId } from "../lib/ids";
import { type Message, toMessage } from "../schemas/message";
import { findOrCreateDirectChat, inChunks, MAX_BOUND_PARAMETERS, requireMember } from "./chats";
import { assertActiveUser, assertCanSendTo } from "./users";

/**
 * The only module that reads or writes the `messages` table (ARCHITECTURE.md §10: message storage
 * may move to one Durable Object per chat; everything else goes through these functions).
 */

type NewMessage = Omit<typeof messages.$inferInsert, "id" | "seq">;

/** Which unique key identifies "the same message" when an insert loses a race. */
type DedupeKey = { transferId: string } | { chatId: string; senderId: string; clientMessageId: string } | null;

/** A posted message; `memberIds` (everybody in the chat when it was posted) only when this call created it. */
export type Posted = { message: Message; created: true; memberIds: string[] } | { message: Message; created: false };

async function findByDedupeKey(db: Database, key: DedupeKey): Promise<MessageRow | undefined> {
  if (key === null) return undefined;
  if ("transferId" in key) return db.select().from(messages).where(eq(messages.transferId, key.transferId)).get();
  return db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.chatId, key.chatId),
        eq(messages.senderId, key.senderId),
        eq(messages.clientMessageId, key.clientMessageId),
      ),
    )
    .get();
}

/**
 * Appends a message to its chat. The seq is allocated in the same D1 batch (one transaction) as
 * the insert: bump `chats.last_seq`, insert with `seq = (SELECT last_seq ...)`. D1 runs batches one
 * at a time, so concurrent senders get 1, 2, 3… with no gap and no repeat; a failed insert rolls
 * the bump back. The same batch moves the sender's read marker to the new seq (your own messages
 * are never unread) and stamps every membership's activity time (the indexed chat list).
 *
 * - `dedupe`: when the insert fails on that unique key (a concurrent duplicate won the race), the
 *   message that won is returned with `created: false`. Callers look the key up first, so the
 *   common retry is answered without a write; here it only settles races.
 * - `senderMustBeMember`: the membership check is repeated inside the batch (the seq subquery is
 *   NULL for a non-member, so the NOT NULL insert fails and the whole batch rolls back): a member
 *   removed between the route's check and this write gets 404 `chat_not_found`, not a message in.
 */
export async function appendMessage(
  db: Database,
  input: NewMessage,
  options: { dedupe?: DedupeKey; senderMustBeMember?: boolean } = {},
): Promise<Posted> {
  const dedupe = options.dedupe ?? null;
  const id = newId(input.createdAt);
  const isMember = sql`EXISTS (SELECT 1 FROM chat_members WHERE chat_id = ${input.chatId} AND user_id = ${input.senderId})`;
  const guard = options.senderMustBeMember ? sql` AND ${isMember}` : sql``;
  const currentSeq = sql`(SELECT last_seq FROM chats WHERE id = ${input.chatId}${guard})`;
  try {
    const [, , , , inserted, members] = await db.batch([
      db
        .update(chats)
        .set({ lastSeq: sql`${chats.lastSeq} + 1`, lastActivityAt: sql`max(${chats.lastActivityAt}, ${input.createdAt})` })
        .where(and(eq(chats.id, input.chatId), options.senderMustBeMember ? isMember : undefined)),
      db.insert(messages).values({ ...input, id, seq: currentSeq }),
      db
        .update(chatMembers)
        .set({ lastReadSeq: currentSeq })
        .where(and(eq(chatMembers.chatId, input.chatId), eq(chatMembers.userId, input.senderId))),
      db
        .update(chatMembers)
        .set({ lastActivityAt: sql`max(${chatMembers.lastActivityAt}, ${input.createdAt})` })
        .where(eq(chatMembers.chatId, input.chatId)),
      db.select().from(messages).where(eq(messages.id, id)),
      db.select({ userId: chatMembers.userId }).from(chatMembers).where(eq(chatMembers.chatId, input.chatId)),
    ]);
    const row = inserted[0];
    if (!row) throw new Error(`message ${id} missing right after its insert`);
    return { message: toMessage(row), created: true, memberIds: members.map((member) => member.userId) };
  } catch (error) {
    const winner = await findByDedupeKey(db, dedupe);
    if (winner) return { message: toMessage(winner), created: false };
    if (options.senderMustBeMember) {
      const stillMember = await db
        .select({ userId: chatMembers.userId })
        .from(chatMembers)
        .where(and(eq(chatMembers.chatId, input.chatId), eq(chatMembers.userId, input.senderId)))
        .get();
      if (!stillMember) throw new ApiError("chat_not_found", [`No chat ${input.chatId} among your chats`]);
    }
    throw error;
  }
}

export type CreditTransferMessageInput = {
  transferId: string;
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  /** Epoch ms of the transfer. */
  createdAt: number;
};

/**
 * Posts the `credit_transfer` message of a transfer into the direct chat of payer and payee
 * (created if missing). Keyed by `transferId` (UNIQUE): any number of calls, concurrent or
 * repeated by the transfer protocol's recovery, return the one message. The sender is the payer;
 * `content` is null, the transfer is in `creditTransfer`. Blocks and suspension are NOT checked
 * here: the transfer protocol checked them before moving credits, and a transfer that moved
 * credits must get its message.
 */
export async function postCreditTransferMessage(db: Database, input: CreditTransferMessageInput): Promise<Message> {
  const existing = await findByDedupeKey(db, { transferId: input.transferId });
  if (existing) return toMessage(existing);
  const { chat } = await findOrCreateDirectChat(db, input.senderId, input.recipientId, input.createdAt);
  const { message } = await appendMessage(
    db,
    {
      chatId: chat.id,
      senderId: input.senderId,
      type: "credit_transfer",
      content: null,
      transferId: input.transferId,
      transferRecipientId: input.recipientId,
      transferAmount: input.amount,
      transferNote: input.note,
      createdAt: input.createdAt,
    },
    { dedupe: { transferId: input.transferId } },
  );
  return message;
}

/** The message at `seq` of each chat (its last message when `seq` is the chat's lastSeq). */
export async function lastMessagesOf(db: Database, positions: { chatId: string; seq: number }[]): Promise<Map<string, Message>> {
  const wanted = positions.filter((position) => position.seq > 0);
  const byChat = new Map<string, Message>();
  // Two bound parameters per (chat_id, seq) pair; each pair is one lookup of messages_chat_seq_unique.
  const [first, ...rest] = inChunks(wanted, Math.floor(MAX_BOUND_PARAMETERS / 2)).map((chunk) =>
    db
      .select()
      .from(messages)
      .where(or(...chunk.map((position) => and(eq(messages.chatId, position.chatId), eq(messages.seq, position.seq))))),
  );
  if (!first) return byChat;
  for (const rows of await db.batch([first, ...rest])) {
    for (const row of rows) byChat.set(row.chatId, toMessage(row));
  }
  return byChat;
}

/** v1: a text message to a user, in your direct chat with them (created if missing). */
export async function sendDirectMessage(db: Database, senderId: string, recipientId: string, content: string): Promise<Posted> {
  if (recipientId === senderId) throw new ApiError("validation_failed", ["recipientId: cannot message yourself"]);
  await assertCanSendTo(db, senderId, recipientId);
  const now = Date.now();
  const { chat } = await findOrCreateDirectChat(db, senderId, recipientId, now);
  return appendMessage(db, { chatId: chat.id, senderId, type: "text", content, createdAt: now }, { senderMustBeMember: true });
}

/**
 * v2: a text message into a chat you are a member of. Checks, in order: you are active (403
 * `account_suspended`); the chat is yours (404 `chat_not_found`); a known `clientMessageId` of
 * yours in this chat returns the original (`created: false`, answered 200); in a direct chat, the
 * other person has not blocked you (403 `recipient_blocked`; blocks do not apply inside groups);
 * `replyToMessageId` is a message of this chat (400).
 */
export async function sendChatMessage(
  db: Database,
  senderId: string,
  input: { chatId: string; content: string; replyToMessageId?: string | undefined; clientMessageId?: string | undefined },
): Promise<Posted> {
  await assertActiveUser(db, senderId);
  const { chat } = await requireMember(db, input.chatId, senderId);
  const dedupe: DedupeKey =
    input.clientMessageId === undefined ? null : { chatId: chat.id, senderId, clientMessageId: input.clientMessageId };
  const original = await findByDedupeKey(db, dedupe);
  if (original) return { message: toMessage(original), created: false };
  if (chat.type === "direct") {
    const others = await db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, chat.id), sql`${chatMembers.userId} <> ${senderId}`))
      .all();
    for (const other of others) await assertCanSendTo(db, senderId, other.userId);
  }
  if (input.replyToMessageId !== undefined) {
    const target = await db
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.id, input.replyToMessageId), eq(messages.chatId, chat.id)))
      .get();
    if (!target) throw new ApiError("validation_failed", ["replyToMessageId: no such message in this chat"]);
  }
  return appendMessage(
    db,
    {
      chatId: chat.id,
      senderId,
      type: "text",
      content: input.content,
      replyToMessageId: input.replyToMessageId ?? null,
      clientMessageId: input.clientMessageId ?? null,
      createdAt: Date.now(),
    },
    { dedupe, senderMustBeMember: true },
  );
}

export type PagePosition = { order: "desc" | "asc"; seq: number | null };

/**
 * The list query, exposed so a test can EXPLAIN it: a range of the (chat_id, seq) unique index,
 * walked backwards (newest first) or forwards (catch-up), never sorted in a temp B-tree.
 */
export function messagePageQuery(db: Database, chatId: string, position: PagePosition, take: number) {
  const { order, seq } = position;
  const range = seq === null ? undefined : order === "desc" ? lt(messages.seq, seq) : gt(messages.seq, seq);
  return db
    .select()
    .from(messages)
    .where(and(eq(messages.chatId, chatId), range))
    .orderBy(order === "desc" ? desc(messages.seq) : asc(messages.seq))
    .limit(take);
}

const messageCursorShape = z.object({
  c: z.string().regex(ID_PATTERN),
  s: z.number().int().min(0),
  o: z.enum(["asc", "desc"]),
});

/**
 * A page of a chat's messages. Without `afterSeq`: newest first, `cursor` continues below the
 * last seq seen. With `afterSeq`: oldest first from the message after it (catch-up); its
 * `nextCursor` continues forwards. A cursor carries its chat and direction, so it wins over
 * `afterSeq`; a cursor of another chat is 400. Deleted messages keep their place.
 */
export async function listMessages(
  db: Database,
  userId: string,
  chatId: string,
  query: { limit: number; cursor?: string | undefined; afterSeq?: number | undefined },
) {
  await requireMember(db, chatId, userId);
  let position: PagePosition;
  if (query.cursor !== undefined) {
    const decoded = decodeCursor(query.cursor, messageCursorShape);
    if (decoded.c !== chatId) throw new ApiError("validation_failed", ["cursor: belongs to another chat"]);
    position = { order: decoded.o, seq: decoded.s };
  } else if (query.afterSeq !== undefined) {
    position = { order: "asc", seq: query.afterSeq };
  } else {
    position = { order: "desc", seq: null };
  }
  const rows = await messagePageQuery(db, chatId, position, query.limit + 1).all();
  return toPage(rows, query.limit, toMessage, (row) => ({ c: chatId, s: row.seq, o: position.order }));
}

/**
 * The message for an edit or delete by `userId`, checked in API.md's order: not found or not a
 * member → 404 `message_not_found`; not yours → 403; not a live text message → 409 `message_immutable`.
 */
async function ownEditableMessage(db: Database, userId: string, messageId: string): Promise<MessageRow> {
  const row = await db.select().from(messages).where(eq(messages.id, messageId)).get();
  const member =
    row &&
    (await db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, row.chatId), eq(chatMembers.userId, userId)))
      .get());
  if (!row || !member) throw new ApiError("message_not_found", [`No message ${messageId} in your chats`]);
  if (row.senderId !== userId) throw new ApiError("insufficient_permissions", ["Only the sender edits or deletes a message"]);
  assertMutable(row);
  return row;
}

function assertMutable(row: Pick<MessageRow, "type" | "deletedAt">) {
  if (row.type !== "text") throw new ApiError("message_immutable", [`A ${row.type} message cannot be edited or deleted`]);
  if (row.deletedAt !== null) throw new ApiError("message_immutable", ["This message was deleted"]);
}

/** Runs a conditional update of a live text message; a concurrent delete between check and write is 409. */
async function updateLiveText(db: Database, messageId: string, set: Partial<typeof messages.$inferInsert>) {
  const [updated, members] = await db.batch([
    db
      .update(messages)
      .set(set)
      .where(and(eq(messages.id, messageId), eq(messages.type, "text"), sql`${messages.deletedAt} IS NULL`))
      .returning(),
    db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(sql`${chatMembers.chatId} = (SELECT chat_id FROM messages WHERE id = ${messageId})`),
  ]);
  const row = updated[0];
  if (!row) throw new ApiError("message_immutable", ["This message was deleted"]);
  return { message: toMessage(row), memberIds: members.map((member) => member.userId) };
}

/** Edits your own text message (a suspended sender cannot: 403 `account_suspended`, after the checks above). */
export async function editMessage(db: Database, userId: string, messageId: string, content: string) {
  await ownEditableMessage(db, userId, messageId);
  await assertActiveUser(db, userId);
  return updateLiveText(db, messageId, { content, editedAt: Date.now() });
}

/** Deletes your own text message: it keeps its place and seq, with `content: null` and `deletedAt`. */
export async function deleteMessage(db: Database, userId: string, messageId: string) {
  await ownEditableMessage(db, userId, messageId);
  return updateLiveText(db, messageId, { content: null, deletedAt: Date.now() });
}
