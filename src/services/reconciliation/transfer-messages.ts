import type { ChatTransferMessage, TransferMessagePage } from "../../durable-objects/chat/chat-types";
import { directChatIdOf } from "../../lib/direct-chat";
import { chatStub } from "../chat-objects";
import { directKeyOf } from "../membership";
import { type Budget, mapLimited } from "./budget";
import type { TransferMessage } from "./checks";

/**
 * The reconciliation's reads of transfer messages, read-only, in one place: each chat's messages
 * are in its object (durable-objects/chat/transfer-reads.ts), and a transfer's message is in the
 * direct chat of its sender and recipient (its id derived from the pair). D1 holds no messages:
 * it only lists the chats that carry transfers (for the walk). Every read takes its subrequests from the step's `budget`.
 */

/**
 * The direct chat of each pair, by direct key: derived from the pair (lib/direct-chat.ts), so no
 * directory row is needed (a transfer's chat is listed in D1 only behind its answer). A pair
 * with no chat yet names an object that holds none: it answers no messages.
 */
export async function directChatsOf(pairs: readonly [string, string][]): Promise<Map<string, string>> {
  const keys = new Map(pairs.map(([a, b]) => [directKeyOf(a, b), [a, b] as const]));
  const ids = await Promise.all([...keys.values()].map(([a, b]) => directChatIdOf(a, b)));
  return new Map([...keys.keys()].map((key, i) => [key, ids[i]!]));
}

/**
 * The messages of these transfers in these chats (chat id → transfer ids): one call per chat. A
 * transfer's message found elsewhere than where it was asked for is not returned.
 */
export async function messagesOfTransfers(
  env: Env,
  budget: Budget,
  wanted: ReadonlyMap<string, string[]>,
): Promise<TransferMessage[]> {
  const answers = await mapLimited([...wanted], ([chatId, ids]) =>
    budget.spend(chatStub(env, chatId).transferMessagesByIds(chatId, ids)),
  );
  return answers.flatMap((answer) => answer.messages.map((m) => inChat(answer.chatId, m)));
}

/** The messages of transfers, each looked for in the direct chat of its pair (derived), with `messagesOfTransfers`. */
export async function messagesInPairChats(
  env: Env,
  budget: Budget,
  transfers: readonly { transferId: string; pair: [string, string] }[],
): Promise<TransferMessage[]> {
  const chats = await directChatsOf(transfers.map((t) => t.pair));
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
 * A page of a member's transfer messages in one chat, sent or received, by transfer id: one call
 * to the chat's object.
 */
export async function chatTransferPage(
  env: Env,
  budget: Budget,
  chatId: string,
  query: TransferMessagePage,
): Promise<TransferMessage[]> {
  const answer = await budget.spend(chatStub(env, chatId).transferMessagesPage(chatId, query));
  return answer.messages.map((m) => inChat(chatId, m));
}

const inChat = (chatId: string, message: ChatTransferMessage): TransferMessage => ({ ...message, chatId });
