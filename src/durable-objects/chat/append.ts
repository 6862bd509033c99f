import { eq, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { invariant } from "../../lib/errors";
import { type ChatMessageRow, type ChatMeta, chatRow, type chatSchema, messages, transferTotals } from "./chat-schema";
import type { Members } from "./members";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/** A message to append: everything but what the chat decides (seq, id unless fixed, the unset optional fields). */
export type NewChatMessage = Partial<Omit<ChatMessageRow, "seq" | "senderId" | "type" | "createdAt">> &
  Pick<ChatMessageRow, "senderId" | "type" | "createdAt">;

/** Every column of a message row, each bound by name in the prepared insert. */
const MESSAGE_COLUMNS: Record<keyof ChatMessageRow, true> = {
  seq: true,
  id: true,
  senderId: true,
  type: true,
  content: true,
  replyToMessageId: true,
  clientMessageId: true,
  transferId: true,
  transferRecipientId: true,
  transferAmount: true,
  transferNote: true,
  createdAt: true,
  editedAt: true,
  deletedAt: true,
};

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/**
 * A message id of this chat: 4 bytes of Unix seconds (ids stay time-ordered like ObjectIds,
 * API.md "IDs"), the chat's 6-byte route tag (so PATCH/DELETE /messages/{id} find the chat from the
 * id alone, with no directory lookup per message), and the low 16 bits of the seq: unique, since
 * one chat cannot give out 65,536 seqs within one second.
 */
export function messageIdOf(meta: Pick<ChatMeta, "routeTag">, seq: number, createdAt: number): string {
  return hex(Math.floor(createdAt / 1000) >>> 0, 8) + meta.routeTag + hex(seq & 0xffff, 4);
}

/** The route tag a message id carries (its bytes 4..9), whichever chat it names. */
export const routeTagOf = (messageId: string) => messageId.slice(8, 20);

/**
 * The chat's log: the only writer of `messages`, `chat.last_seq` and `transfer_totals`. Each
 * append takes `last_seq + 1` (seqs run 1, 2, 3… with no gap and no repeat: the caller runs it
 * inside one `transactionSync` with the checks that allowed it), moves the chat's activity, the
 * sender's own marker (your own messages are never unread) and, for a transfer's message, its
 * sender's running totals.
 */
export class Log {
  /** The statements every send and page runs, built once (see Members). */
  private readonly prepared;

  constructor(
    private readonly db: Db,
    private readonly members: Members,
  ) {
    const p = sql.placeholder;
    const columns = Object.fromEntries(Object.keys(MESSAGE_COLUMNS).map((column) => [column, p(column)]));
    this.prepared = {
      meta: db.select().from(chatRow).where(eq(chatRow.id, 1)).prepare(),
      insert: db
        .insert(messages)
        .values(columns as unknown as ChatMessageRow)
        .prepare(),
      advance: db
        .update(chatRow)
        .set({ lastSeq: sql`${p("seq")}`, lastActivityAt: sql`max(${chatRow.lastActivityAt}, ${p("createdAt")})` })
        .where(eq(chatRow.lastSeq, p("previous")))
        .returning({ lastSeq: chatRow.lastSeq })
        .prepare(),
      byId: db
        .select()
        .from(messages)
        .where(eq(messages.id, p("id")))
        .prepare(),
      byClientId: db
        .select()
        .from(messages)
        .where(sql`${messages.senderId} = ${p("senderId")} AND ${messages.clientMessageId} = ${p("clientMessageId")}`)
        .prepare(),
      byTransfer: db
        .select()
        .from(messages)
        .where(eq(messages.transferId, p("transferId")))
        .prepare(),
      range: db
        .select()
        .from(messages)
        .where(sql`${messages.seq} BETWEEN ${p("from")} AND ${p("to")}`)
        .orderBy(messages.seq)
        .prepare(),
    };
  }

  meta(): ChatMeta | undefined {
    return this.prepared.meta.get();
  }

  append(meta: ChatMeta, input: NewChatMessage): ChatMessageRow {
    const seq = meta.lastSeq + 1;
    const row: ChatMessageRow = {
      content: null,
      replyToMessageId: null,
      clientMessageId: null,
      transferId: null,
      transferRecipientId: null,
      transferAmount: null,
      transferNote: null,
      editedAt: null,
      deletedAt: null,
      ...input,
      id: input.id ?? messageIdOf(meta, seq, input.createdAt),
      seq,
    };
    this.prepared.insert.run(row);
    const moved = this.prepared.advance.get({ seq, createdAt: row.createdAt, previous: meta.lastSeq });
    invariant(moved?.lastSeq === seq, `chat ${meta.chatId}: seq ${seq} was not the next one`);
    meta.lastSeq = seq;
    if (this.members.get(row.senderId)) this.members.markRead(row.senderId, seq);
    if (row.type === "credit_transfer") this.countTransfer(row);
    return row;
  }

  private countTransfer(row: ChatMessageRow): void {
    const amount = row.transferAmount ?? 0;
    invariant(row.transferId !== null && amount > 0, `transfer message ${row.id} without its transfer`);
    this.db
      .insert(transferTotals)
      .values({ senderId: row.senderId, count: 1, amount })
      .onConflictDoUpdate({
        target: transferTotals.senderId,
        set: { count: sql`${transferTotals.count} + 1`, amount: sql`${transferTotals.amount} + ${amount}` },
      })
      .run();
  }

  byId(messageId: string): ChatMessageRow | undefined {
    return this.prepared.byId.get({ id: messageId });
  }

  byTransfer(transferId: string): ChatMessageRow | undefined {
    return this.prepared.byTransfer.get({ transferId });
  }

  byClientId(senderId: string, clientMessageId: string): ChatMessageRow | undefined {
    return this.prepared.byClientId.get({ senderId, clientMessageId });
  }

  bySeq(seq: number): ChatMessageRow | undefined {
    return this.db.select().from(messages).where(eq(messages.seq, seq)).get();
  }

  /** The messages with seq in [from, to], ascending (a page is always such a range: seqs have no gaps). */
  range(from: number, to: number): ChatMessageRow[] {
    return this.db.select().from(messages).where(sql`${messages.seq} BETWEEN ${from} AND ${to}`).orderBy(messages.seq).all();
  }

  /** Edits or deletes a live text message; the caller checked who may. */
  update(messageId: string, set: { content: string | null; editedAt?: number; deletedAt?: number }): ChatMessageRow {
    const row = this.db.update(messages).set(set).where(eq(messages.id, messageId)).returning().get();
    invariant(row, `message ${messageId} vanished during its update`);
    return row;
  }
}
