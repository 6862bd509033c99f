import { and, asc, between, eq, gt, gte, inArray, lt, ne, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { type ChatMessageRow, type ChatMeta, type chatSchema, messages, transferTotals } from "./chat-schema";
import type {
  ChatTransferMessage,
  ChatTransferMessages,
  ChatTransferTotals,
  TransferMessagePage,
  TransferTotal,
} from "./chat-types";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/** SQLite in a Durable Object binds at most 100 parameters per statement. */
const IDS_PER_STATEMENT = 90;

/**
 * What reconciliation reads of this chat's `credit_transfer` messages (services/reconciliation/),
 * read-only: the running totals per sender (append.ts keeps them), a transfer's message by its
 * transfer id, a member's transfer messages by transfer id. Each is bounded by a transfer-id range
 * or a list of ids through `messages_transfer_unique`, never a scan of the chat.
 */
export class TransferReads {
  constructor(private readonly db: Db) {}

  /** Whether any transfer's message is in this chat (the directory marks such chats for reconciliation). */
  carries(): boolean {
    // A range on the primary key (every sender id is above ""): a search of one row, never a scan.
    return (
      this.db
        .select({ senderId: transferTotals.senderId })
        .from(transferTotals)
        .where(gt(transferTotals.senderId, ""))
        .limit(1)
        .get() !== undefined
    );
  }

  /** Per sender, the transfer messages whose transfer id sorts below `before` (all of them when null). */
  totals(before: string | null): Omit<ChatTransferTotals, "chatId"> {
    const all = this.db.select().from(transferTotals).all();
    const above =
      before === null
        ? []
        : this.db
            .select({
              senderId: messages.senderId,
              count: sql<number>`count(*)`,
              amount: sql<number>`coalesce(sum(${messages.transferAmount}), 0)`,
            })
            .from(messages)
            .where(gte(messages.transferId, before))
            .groupBy(messages.senderId)
            .all();
    const senders = all
      .map((total): TransferTotal => {
        const late = above.find((row) => row.senderId === total.senderId);
        return late ? { ...total, count: total.count - late.count, amount: total.amount - late.amount } : total;
      })
      .filter((total) => total.count !== 0 || total.amount !== 0);
    return { senders, legacy: null };
  }

  /** The messages of these transfers that are here. */
  byTransferIds(transferIds: readonly string[]): Omit<ChatTransferMessages, "chatId"> {
    const rows: ChatMessageRow[] = [];
    for (let i = 0; i < transferIds.length; i += IDS_PER_STATEMENT) {
      const chunk = transferIds.slice(i, i + IDS_PER_STATEMENT);
      rows.push(...this.db.select().from(messages).where(inArray(messages.transferId, chunk)).all());
    }
    return { messages: rows.map(toTransferMessage), legacy: null };
  }

  /**
   * A member's transfer messages with transfer id in (afterId, before), by transfer id: those it
   * sent (`sent`) or those the others sent (`received`: in a direct chat, to it).
   */
  page(query: TransferMessagePage): Omit<ChatTransferMessages, "chatId"> {
    const rows = this.db
      .select()
      .from(messages)
      .where(
        and(
          gt(messages.transferId, query.afterId),
          lt(messages.transferId, query.before),
          query.side === "sent" ? eq(messages.senderId, query.userId) : ne(messages.senderId, query.userId),
        ),
      )
      .orderBy(asc(messages.transferId))
      .limit(query.limit)
      .all();
    return { messages: rows.map(toTransferMessage), legacy: null };
  }
}

const toTransferMessage = (row: ChatMessageRow): ChatTransferMessage => ({
  id: row.id,
  transferId: row.transferId ?? "",
  senderId: row.senderId,
  recipientId: row.transferRecipientId,
  amount: row.transferAmount,
});
