import { and, eq, gt, inArray, isNotNull, sql } from "drizzle-orm";
import { createDb } from "../../db/client";
import { messages } from "../../db/schema";
import type { MessageAggregate, TransferMessage } from "./checks";

/**
 * The reconciliation's only reads of the messages table (read-only; the message service owns it),
 * in one place, so they move with the messages if they leave D1 (ARCHITECTURE.md §10). Each is one
 * D1 call, through the partial indexes on (sender_id | transfer_recipient_id, transfer_id).
 */

/** D1 allows 100 bound parameters per statement. */
const IDS_PER_STATEMENT = 90;

/** Transfer messages per sender and per recipient for a page of users: one D1 batch. */
export async function transferMessageAggregates(
  env: Env,
  ids: string[],
): Promise<[Map<string, MessageAggregate>, Map<string, MessageAggregate>]> {
  const bySender = new Map<string, MessageAggregate>();
  const byRecipient = new Map<string, MessageAggregate>();
  if (ids.length === 0) return [bySender, byRecipient];
  const statements: D1PreparedStatement[] = [];
  const chunks: string[][] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_STATEMENT) chunks.push(ids.slice(i, i + IDS_PER_STATEMENT));
  for (const column of ["sender_id", "transfer_recipient_id"]) {
    for (const chunk of chunks) {
      statements.push(
        env.DB.prepare(
          `SELECT ${column} AS user_id, COUNT(*) AS count, COALESCE(SUM(transfer_amount), 0) AS amount FROM messages
           WHERE transfer_id IS NOT NULL AND ${column} IN (${chunk.map(() => "?").join(",")}) GROUP BY ${column}`,
        ).bind(...chunk),
      );
    }
  }
  const results = await env.DB.batch<{ user_id: string; count: number; amount: number }>(statements);
  results.forEach((result, index) => {
    const target = index < chunks.length ? bySender : byRecipient;
    for (const row of result.results) target.set(row.user_id, { count: row.count, amount: row.amount });
  });
  return [bySender, byRecipient];
}

/** A user's transfer messages sent (`sender`) or received (`recipient`) with transfer id in (afterId, last]. */
export async function transferMessagesInRange(
  env: Env,
  side: "sender" | "recipient",
  userId: string,
  afterId: string,
  last: string | null,
): Promise<TransferMessage[]> {
  const column = side === "sender" ? messages.senderId : messages.transferRecipientId;
  const rows = await createDb(env.DB)
    .select(messageColumns)
    .from(messages)
    .where(
      and(
        eq(column, userId),
        isNotNull(messages.transferId),
        gt(messages.transferId, afterId),
        last === null ? undefined : sql`${messages.transferId} <= ${last}`,
      ),
    )
    .all();
  return rows.map(toTransferMessage);
}

export async function transferMessagesById(env: Env, transferIds: string[]): Promise<TransferMessage[]> {
  const rows = await createDb(env.DB)
    .select(messageColumns)
    .from(messages)
    .where(inArray(messages.transferId, transferIds))
    .all();
  return rows.map(toTransferMessage);
}

const messageColumns = {
  id: messages.id,
  transferId: messages.transferId,
  senderId: messages.senderId,
  recipientId: messages.transferRecipientId,
  amount: messages.transferAmount,
};

const toTransferMessage = (row: {
  id: string;
  transferId: string | null;
  senderId: string;
  recipientId: string | null;
  amount: number | null;
}): TransferMessage => ({ ...row, transferId: row.transferId ?? "" });
