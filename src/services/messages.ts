import { and, eq, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { chatMembers, chats, type MessageRow, messages } from "../db/schema";
import { newId } from "../lib/ids";
import { type Message, toMessage } from "../schemas/message";
import { findOrCreateDirectChat } from "./chats";

/**
 * The only module that reads or writes the `messages` table (ARCHITECTURE.md §10: message storage
 * may move to one Durable Object per chat; everything else goes through these functions).
 */

type NewMessage = Omit<typeof messages.$inferInsert, "id" | "seq">;

/** Which unique key identifies "the same message" when an insert loses a race. */
type DedupeKey = { transferId: string } | { chatId: string; senderId: string; clientMessageId: string } | null;

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
 * When the insert fails on a unique key in `dedupe` (a concurrent duplicate won), the message that
 * won is returned with `created: false`.
 */
export async function appendMessage(
  db: Database,
  input: NewMessage,
  dedupe: DedupeKey = null,
): Promise<{ row: MessageRow; created: boolean }> {
  const existing = await findByDedupeKey(db, dedupe);
  if (existing) return { row: existing, created: false };

  const id = newId(input.createdAt);
  const currentSeq = sql`(SELECT last_seq FROM chats WHERE id = ${input.chatId})`;
  try {
    const [, , , , inserted] = await db.batch([
      db
        .update(chats)
        .set({ lastSeq: sql`${chats.lastSeq} + 1`, lastActivityAt: sql`max(${chats.lastActivityAt}, ${input.createdAt})` })
        .where(eq(chats.id, input.chatId)),
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
    ]);
    const row = inserted[0];
    if (!row) throw new Error(`message ${id} missing right after its insert`);
    return { row, created: true };
  } catch (error) {
    const winner = await findByDedupeKey(db, dedupe);
    if (winner) return { row: winner, created: false };
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
  const { row } = await appendMessage(
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
    { transferId: input.transferId },
  );
  return toMessage(row);
}
