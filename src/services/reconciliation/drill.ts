import type { IncomingRow, OutgoingRow } from "../../durable-objects/wallet/wallet-books";
import { walletStub } from "../../durable-objects/wallet/wallet-stub";
import { Budget } from "./budget";
import { type MessageAggregate, pairIncoming, pairOutgoing, type Suspect, seenAggregate } from "./checks";
import type { MessageTotalsStore } from "./message-totals";
import { chatTransferPage, messagesInPairChats, transferChatsOf } from "./transfer-messages";

/**
 * The drill of one wallet whose page did not add up, in one direction (`out`: the transfers it
 * sent; `in`: the credits it received), below the run's settled bound. Two passes, each a series
 * of bounded steps:
 *
 * 1. `drill <dir> <user> N`, the wallet's side: DRILL_PAGE of its transfers by id, each paired with
 *    its message in the pair's direct chat (one call per chat, at most DRILL_CHATS chats a step):
 *    a transfer without its exact message, or a voided one with a message, is a suspect. The
 *    messages it saw are added up.
 * 2. `drill <dir> <user> chats N`, the messages' side, only when the wallet's message totals (the
 *    walk's) differ from what pass 1 saw, so some message of the wallet was not one of its
 *    transfers': its chats that carry transfers, each paged through by transfer id and checked
 *    against the wallet by id; a message without its transfer or credit is a suspect.
 */

export const DRILL_PAGE = 500;
/** Chats (one call each) a step of pass 1 reaches at most: its page ends before a transfer with a new counterparty past it. */
export const DRILL_CHATS = 100;
/** Subrequests a step of pass 2 spends at most (a chat's page and the wallet: 2 per page of a chat). */
export const DRILL_CALLS = 150;

export type Direction = "out" | "in";

type TransfersResult = {
  suspects: Suspect[];
  nextAfter: string | null;
  /** The messages this step found for the wallet's transfers. */
  seen: MessageAggregate;
  /** On the last step: the wallet's message totals from the walk, to compare with all that was seen. */
  counted: MessageAggregate | null;
  subrequests: number;
};

/** Pass 1: the wallet's transfers (or credits) after `afterId` and below `before`, against their messages. */
export async function drillTransfers(
  env: Env,
  store: MessageTotalsStore,
  direction: Direction,
  userId: string,
  afterId: string,
  before: string,
): Promise<TransfersResult> {
  const budget = new Budget();
  const wallet = walletStub(env, userId);
  const rows: (OutgoingRow | IncomingRow)[] =
    direction === "out"
      ? await budget.spend(wallet.outgoingPage(afterId, DRILL_PAGE))
      : await budget.spend(wallet.incomingPage(afterId, DRILL_PAGE));
  const counterpartOf = (row: OutgoingRow | IncomingRow) => ("recipientId" in row ? row.recipientId : row.senderId);
  const kept = keepWithin(
    rows.filter((row) => row.transferId < before),
    counterpartOf,
  );
  const more = kept.length < rows.length ? rows[kept.length]!.transferId < before : rows.length === DRILL_PAGE;
  const asked = kept.flatMap((row) => {
    const other = counterpartOf(row);
    return other === null ? [] : [{ transferId: row.transferId, pair: [userId, other] as [string, string] }];
  });
  const messages = await messagesInPairChats(env, budget, asked);
  const suspects =
    direction === "out"
      ? pairOutgoing(userId, kept as OutgoingRow[], messages)
      : pairIncoming(userId, kept as IncomingRow[], messages);
  const nextAfter = more ? kept[kept.length - 1]!.transferId : null;
  let counted: MessageAggregate | null = null;
  if (nextAfter === null) {
    const totals = (await budget.spend(store.read([userId]))).get(userId);
    counted = (direction === "out" ? totals?.sent : totals?.received) ?? { count: 0, amount: 0 };
  }
  return { suspects, nextAfter, seen: seenAggregate(userId, direction, messages), counted, subrequests: budget.used };
}

/** The first rows whose counterparties number at most DRILL_CHATS (at least one row). */
function keepWithin<T>(rows: readonly T[], counterpartOf: (row: T) => string | null): T[] {
  const chats = new Set<string>();
  const kept: T[] = [];
  for (const row of rows) {
    const other = counterpartOf(row);
    if (other !== null && !chats.has(other)) {
      if (chats.size === DRILL_CHATS) break;
      chats.add(other);
    }
    kept.push(row);
  }
  return kept;
}

/** Where pass 2 goes on: in chat `chatId` after transfer `afterId` ("" from its start), or (null) in the chats after it. */
export type ChatCursor = { chatId: string; afterId: string | null };

export const FIRST_CHAT: ChatCursor = { chatId: "", afterId: null };

type MessagesResult = { suspects: Suspect[]; next: ChatCursor | null; subrequests: number };

/** Pass 2: the wallet's transfer messages, chat by chat from `from`, against its transfers (or credits) by id. */
export async function drillMessages(
  env: Env,
  direction: Direction,
  userId: string,
  from: ChatCursor,
  before: string,
): Promise<MessagesResult> {
  const budget = new Budget();
  const wallet = walletStub(env, userId);
  const suspects: Suspect[] = [];
  const listed = await transferChatsOf(env, budget, userId, from.chatId, DRILL_CHATS);
  const chats = from.afterId === null ? listed : [from.chatId, ...listed];
  for (const [i, chatId] of chats.entries()) {
    let afterId = i === 0 && from.afterId !== null ? from.afterId : "";
    for (;;) {
      if (budget.used + 2 > DRILL_CALLS) return { suspects, next: { chatId, afterId }, subrequests: budget.used };
      const side = direction === "out" ? "sent" : "received";
      const page = await chatTransferPage(env, budget, chatId, { userId, side, afterId, before, limit: DRILL_PAGE });
      const ids = page.map((m) => m.transferId);
      if (direction === "out") suspects.push(...pairOutgoing(userId, await budget.spend(wallet.outgoingByIds(ids)), page));
      else suspects.push(...pairIncoming(userId, await budget.spend(wallet.incomingByIds(ids)), page));
      if (page.length < DRILL_PAGE) break;
      afterId = page[page.length - 1]!.transferId;
    }
  }
  const next = listed.length < DRILL_CHATS ? null : { chatId: listed[listed.length - 1]!, afterId: null };
  return { suspects, next, subrequests: budget.used };
}
