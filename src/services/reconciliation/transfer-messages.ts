import type { ChatTransferMessage, LegacyBand, TransferMessagePage } from "../../durable-objects/chat/chat-types";
import { chatStub } from "../chat-objects";
import { directKeyOf } from "../membership";
import { type Budget, mapLimited } from "./budget";
import type { TransferMessage } from "./checks";

/**
 * The reconciliation's reads of transfer messages, read-only, in one place: each chat's messages
 * are in its object (durable-objects/chat/transfer-reads.ts), and a transfer's message is in the
 * direct chat of its sender and recipient (`chats.direct_key`). History an existing deployment
 * wrote to D1 and the chat migration has not moved yet (each object names that band of seqs) is
 * read from D1's `messages`, so a run counts it too; once every chat is migrated, no read here
 * touches D1's `messages`. Every read takes its subrequests from the step's `budget`.
 */

/** D1 binds at most 100 parameters per statement. */
const IDS_PER_STATEMENT = 90;

/** The direct chats of these pairs that exist, by direct key: one D1 batch (none for no pairs). */
export async function directChatsOf(env: Env, budget: Budget, pairs: readonly [string, string][]): Promise<Map<string, string>> {
  const keys = [...new Set(pairs.map(([a, b]) => directKeyOf(a, b)))];
  const found = new Map<string, string>();
  if (keys.length === 0) return found;
  const statements: D1PreparedStatement[] = [];
  for (let i = 0; i < keys.length; i += IDS_PER_STATEMENT) {
    const chunk = keys.slice(i, i + IDS_PER_STATEMENT);
    statements.push(
      env.DB.prepare(`SELECT id, direct_key FROM chats WHERE direct_key IN (${chunk.map(() => "?").join(",")})`).bind(...chunk),
    );
  }
  const results = await budget.spend(env.DB.batch<{ id: string; direct_key: string }>(statements));
  for (const result of results) for (const row of result.results) found.set(row.direct_key, row.id);
  return found;
}

/**
 * The messages of these transfers in these chats (chat id → transfer ids): one call per chat, and
 * one D1 query for those still in a chat's legacy band. A transfer's message found elsewhere than
 * where it was asked for is not returned.
 */
export async function messagesOfTransfers(
  env: Env,
  budget: Budget,
  wanted: ReadonlyMap<string, string[]>,
): Promise<TransferMessage[]> {
  const answers = await mapLimited([...wanted], ([chatId, ids]) =>
    budget.spend(chatStub(env, chatId).transferMessagesByIds(chatId, ids)),
  );
  const found = answers.flatMap((answer) => answer.messages.map((m) => inChat(answer.chatId, m)));
  const have = new Set(found.map((m) => `${m.chatId}:${m.transferId}`));
  const bands = new Map<string, LegacyBand>();
  for (const answer of answers) if (answer.legacy) bands.set(answer.chatId, answer.legacy);
  const missing = [...bands.keys()].flatMap((chatId) => (wanted.get(chatId) ?? []).filter((id) => !have.has(`${chatId}:${id}`)));
  if (missing.length === 0) return found;
  const legacy = await budget.spend(
    env.DB.prepare(
      `SELECT ${LEGACY_COLUMNS} FROM messages WHERE transfer_id IN (SELECT value FROM json_each(?)) AND transfer_id IS NOT NULL`,
    )
      .bind(JSON.stringify(missing))
      .all<LegacyRow>(),
  );
  const inBand = legacy.results.filter((row) => {
    const band = bands.get(row.chat_id);
    return (
      band !== undefined && row.seq >= band.fromSeq && row.seq <= band.toSeq && wanted.get(row.chat_id)?.includes(row.transfer_id)
    );
  });
  return [...found, ...inBand.map(fromLegacy)];
}

/** The messages of transfers, each looked for in the direct chat of its pair: the chats from D1, then `messagesOfTransfers`. */
export async function messagesInPairChats(
  env: Env,
  budget: Budget,
  transfers: readonly { transferId: string; pair: [string, string] }[],
): Promise<TransferMessage[]> {
  const chats = await directChatsOf(
    env,
    budget,
    transfers.map((t) => t.pair),
  );
  const wanted = new Map<string, string[]>();
  for (const { transferId, pair } of transfers) {
    const chatId = chats.get(directKeyOf(...pair));
    if (chatId) wanted.set(chatId, [...(wanted.get(chatId) ?? []), transferId]);
  }
  return messagesOfTransfers(env, budget, wanted);
}

/** A user's chats that carry transfers, by chat id after `afterChatId`: one D1 query. */
export async function transferChatsOf(
  env: Env,
  budget: Budget,
  userId: string,
  afterChatId: string,
  limit: number,
): Promise<string[]> {
  const rows = await budget.spend(
    env.DB.prepare(
      `SELECT c.id FROM chat_members m JOIN chats c ON c.id = m.chat_id
       WHERE m.user_id = ? AND c.carries_transfers = 1 AND c.id > ? ORDER BY c.id LIMIT ?`,
    )
      .bind(userId, afterChatId, limit)
      .all<{ id: string }>(),
  );
  return rows.results.map((row) => row.id);
}

/**
 * A page of a member's transfer messages in one chat, sent or received, by transfer id: from the
 * object, merged with those of its legacy band in D1 (one more query, only while it has one).
 */
export async function chatTransferPage(
  env: Env,
  budget: Budget,
  chatId: string,
  query: TransferMessagePage,
): Promise<TransferMessage[]> {
  const answer = await budget.spend(chatStub(env, chatId).transferMessagesPage(chatId, query));
  const here = answer.messages.map((m) => inChat(chatId, m));
  if (!answer.legacy) return here;
  const legacy = await budget.spend(
    env.DB.prepare(
      `SELECT ${LEGACY_COLUMNS} FROM messages
       WHERE chat_id = ? AND seq BETWEEN ? AND ? AND transfer_id > ? AND transfer_id < ? AND sender_id ${query.side === "sent" ? "=" : "!="} ?
       ORDER BY transfer_id LIMIT ?`,
    )
      .bind(chatId, answer.legacy.fromSeq, answer.legacy.toSeq, query.afterId, query.before, query.userId, query.limit)
      .all<LegacyRow>(),
  );
  const merged = new Map(legacy.results.map((row) => [row.transfer_id, fromLegacy(row)]));
  for (const message of here) merged.set(message.transferId, message);
  return [...merged.values()].sort((a, b) => (a.transferId < b.transferId ? -1 : 1)).slice(0, query.limit);
}

const inChat = (chatId: string, message: ChatTransferMessage): TransferMessage => ({ ...message, chatId });

const LEGACY_COLUMNS = "id, chat_id, seq, transfer_id, sender_id, transfer_recipient_id, transfer_amount";

type LegacyRow = {
  id: string;
  chat_id: string;
  seq: number;
  transfer_id: string;
  sender_id: string;
  transfer_recipient_id: string | null;
  transfer_amount: number | null;
};

const fromLegacy = (row: LegacyRow): TransferMessage => ({
  id: row.id,
  chatId: row.chat_id,
  transferId: row.transfer_id,
  senderId: row.sender_id,
  recipientId: row.transfer_recipient_id,
  amount: row.transfer_amount,
});
