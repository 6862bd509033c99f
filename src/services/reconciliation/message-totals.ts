import { chatStub } from "../chat-objects";
import { Budget, mapLimited } from "./budget";
import type { MessageAggregate } from "./checks";

/**
 * The first phase of a run: every chat that carries transfers (`chats.carries_transfers`), a page
 * at a time, asked for its transfer messages' running totals per sender below the run's settled
 * bound (`transferTotals`, O(1) in its history), added up per user (the sender sent them; in a
 * direct chat, the other member received them) into the run's message totals, which the wallet
 * pages then compare each wallet against. One call per chat per run, whatever its size.
 */

/** Chats per walk step: one object call each, plus 3 D1 calls. */
export const CHATS_PER_PAGE = 200;

export type UserMessages = { sent: MessageAggregate; received: MessageAggregate };

export type ChatPageDone = { nextAfter: string | null; chats: number };

/**
 * Where a run keeps its message totals: D1 for the Workflow (a retried step finds its page there
 * and adds nothing twice), memory for an in-process run that stores nothing.
 */
export type MessageTotalsStore = {
  /** The page as it was added, if it was (a retried step). */
  pageDone(page: number): Promise<ChatPageDone | null>;
  /** Adds a page's totals and records the page, atomically. */
  addPage(page: number, done: ChatPageDone, totals: ReadonlyMap<string, UserMessages>): Promise<void>;
  read(userIds: readonly string[]): Promise<Map<string, UserMessages>>;
};

type WalkResult = ChatPageDone & { subrequests: number };

/** Walk step `chats N`: the page of chats after `afterChatId`, their totals below `before`, added once. */
export async function walkChatPage(
  env: Env,
  store: MessageTotalsStore,
  page: number,
  afterChatId: string,
  before: string,
  limit = CHATS_PER_PAGE,
): Promise<WalkResult> {
  const budget = new Budget();
  const done = await budget.spend(store.pageDone(page));
  if (done) return { ...done, subrequests: budget.used };
  const chats = (
    await budget.spend(
      env.DB.prepare("SELECT id, direct_key FROM chats WHERE carries_transfers = 1 AND id > ? ORDER BY id LIMIT ?")
        .bind(afterChatId, limit)
        .all<{ id: string; direct_key: string | null }>(),
    )
  ).results;
  const answers = await mapLimited(chats, (chat) => budget.spend(chatStub(env, chat.id).transferTotals(chat.id, before)));
  const totals = new Map<string, UserMessages>();
  chats.forEach((chat, i) => {
    const members = chat.direct_key?.split(":") ?? [];
    for (const sender of answers[i]!.senders) {
      const recipient = members.includes(sender.senderId) ? members.find((m) => m !== sender.senderId) : undefined;
      add(totals, sender.senderId, "sent", sender);
      if (recipient) add(totals, recipient, "received", sender);
    }
  });
  const result = { nextAfter: chats.length < limit ? null : chats[chats.length - 1]!.id, chats: chats.length };
  await budget.spend(store.addPage(page, result, totals));
  return { ...result, subrequests: budget.used };
}

function add(totals: Map<string, UserMessages>, userId: string, side: keyof UserMessages, by: MessageAggregate): void {
  const user = totals.get(userId) ?? { sent: { count: 0, amount: 0 }, received: { count: 0, amount: 0 } };
  user[side] = { count: user[side].count + by.count, amount: user[side].amount + by.amount };
  totals.set(userId, user);
}

/** A run's message totals in D1 (`reconciliation_message_totals`, `reconciliation_chat_pages`). */
export function d1MessageTotals(env: Env, runId: string): MessageTotalsStore {
  return {
    pageDone: async (page) => {
      const row = await env.DB.prepare("SELECT next_after, chats FROM reconciliation_chat_pages WHERE run_id = ? AND page = ?")
        .bind(runId, page)
        .first<{ next_after: string | null; chats: number }>();
      return row ? { nextAfter: row.next_after, chats: row.chats } : null;
    },
    addPage: async (page, done, totals) => {
      const rows = [...totals].map(([userId, t]) => [userId, t.sent.count, t.sent.amount, t.received.count, t.received.amount]);
      // One batch, one transaction: the totals are added only if the page is not recorded yet, and the page with them.
      await env.DB.batch([
        env.DB.prepare(
          `INSERT INTO reconciliation_message_totals (run_id, user_id, sent_count, sent_amount, received_count, received_amount)
           SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
             json_extract(value, '$[3]'), json_extract(value, '$[4]')
           FROM json_each(?3)
           WHERE NOT EXISTS (SELECT 1 FROM reconciliation_chat_pages WHERE run_id = ?1 AND page = ?2)
           ON CONFLICT (run_id, user_id) DO UPDATE SET
             sent_count = sent_count + excluded.sent_count, sent_amount = sent_amount + excluded.sent_amount,
             received_count = received_count + excluded.received_count,
             received_amount = received_amount + excluded.received_amount`,
        ).bind(runId, page, JSON.stringify(rows)),
        env.DB.prepare(
          "INSERT INTO reconciliation_chat_pages (run_id, page, next_after, chats) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ).bind(runId, page, done.nextAfter, done.chats),
      ]);
    },
    read: async (userIds) => {
      const found = new Map<string, UserMessages>();
      if (userIds.length === 0) return found;
      const rows = await env.DB.prepare(
        `SELECT user_id, sent_count, sent_amount, received_count, received_amount FROM reconciliation_message_totals
         WHERE run_id = ? AND user_id IN (SELECT value FROM json_each(?))`,
      )
        .bind(runId, JSON.stringify(userIds))
        .all<{ user_id: string; sent_count: number; sent_amount: number; received_count: number; received_amount: number }>();
      for (const row of rows.results) {
        found.set(row.user_id, {
          sent: { count: row.sent_count, amount: row.sent_amount },
          received: { count: row.received_count, amount: row.received_amount },
        });
      }
      return found;
    },
  };
}

/** The same in memory, for a run in-process that stores nothing (`reconcile`). */
export function memoryMessageTotals(): MessageTotalsStore {
  const pages = new Map<number, ChatPageDone>();
  const totals = new Map<string, UserMessages>();
  return {
    pageDone: async (page) => pages.get(page) ?? null,
    addPage: async (page, done, added) => {
      if (pages.has(page)) return;
      pages.set(page, done);
      for (const [userId, t] of added) {
        add(totals, userId, "sent", t.sent);
        add(totals, userId, "received", t.received);
      }
    },
    read: async (userIds) => new Map(userIds.flatMap((id) => (totals.has(id) ? [[id, totals.get(id)!] as const] : []))),
  };
}

/** Rows deleted per `tidy` step (each of the two tables). */
export const TIDY_ROWS = 5_000;

/** Deletes earlier runs' message totals and pages, up to TIDY_ROWS rows of each; whether any may remain. */
export async function tidyEarlierRuns(env: Env, runId: string): Promise<{ more: boolean; subrequests: number }> {
  const [totals, pages] = await env.DB.batch([
    env.DB.prepare(
      `DELETE FROM reconciliation_message_totals WHERE rowid IN
         (SELECT rowid FROM reconciliation_message_totals WHERE run_id != ? LIMIT ${TIDY_ROWS})`,
    ).bind(runId),
    env.DB.prepare(
      `DELETE FROM reconciliation_chat_pages WHERE rowid IN
         (SELECT rowid FROM reconciliation_chat_pages WHERE run_id != ? LIMIT ${TIDY_ROWS})`,
    ).bind(runId),
  ]);
  return { more: totals!.meta.changes >= TIDY_ROWS || pages!.meta.changes >= TIDY_ROWS, subrequests: 1 };
}
