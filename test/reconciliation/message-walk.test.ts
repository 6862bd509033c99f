import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { createDb } from "../../src/db/client";
import { getConfig } from "../../src/lib/config";
import { directChatIdOf } from "../../src/lib/direct-chat";
import { newId } from "../../src/lib/ids";
import { chatStub, newRouteTag } from "../../src/services/chat-objects";
import { createDirectChat, memberLimitsOf } from "../../src/services/chats";
import { directKeyOf } from "../../src/services/membership";
import { Budget } from "../../src/services/reconciliation/budget";
import { settledBefore } from "../../src/services/reconciliation/checks";
import {
  d1MessageTotals,
  type MessageTotalsStore,
  memoryMessageTotals,
  walkChatPage,
} from "../../src/services/reconciliation/message-totals";
import { messagesOfTransfers } from "../../src/services/reconciliation/transfer-messages";
import { chatFaults } from "../support/test-chat";
import { seedUser } from "../support/users";
import { seedWalletUser } from "../support/wallets";
import { type Found, runToCompletion, sent } from "./support";

const carries = async (a: string, b: string) =>
  (
    await env.DB.prepare("SELECT carries_transfers AS c FROM chats WHERE direct_key = ?")
      .bind(directKeyOf(a, b))
      .first<{ c: number }>()
  )?.c;

/** Waits for the pair's chat to be marked (its outbox writes the mark behind the transfer's answer, within 1 s). */
const marked = (a: string, b: string) =>
  vi.waitFor(async () => expect(await carries(a, b)).toBe(1), { timeout: 1_000, interval: 25 });

/** Every page of the walk (other tests' chats too), below `before`; the steps' results. */
async function walkAll(store: MessageTotalsStore, before = settledBefore(Date.now()), limit = 200) {
  const pages = [];
  let after = "";
  for (let page = 1; ; page += 1) {
    const result = await walkChatPage(env, store, page, after, before, limit);
    pages.push(result);
    if (result.nextAfter === null) return pages;
    after = result.nextAfter;
  }
}

describe("chats that carry transfers", () => {
  it("are marked within 1 s of a transfer's message, behind its answer: a new pair's chat and a known pair's", async () => {
    const [a, b, c, d] = await Promise.all([seedWalletUser(), seedWalletUser(), seedWalletUser(), seedWalletUser()]);
    expect(await carries(a.id, b.id)).toBeUndefined();
    await sent(a, b, 3);
    await marked(a.id, b.id);
    // A pair that talked first: its chat exists, unmarked, until one of them pays the other.
    await createDirectChat(env, c.id, d.id, memberLimitsOf(getConfig(env)));
    expect(await carries(c.id, d.id)).toBe(0);
    await sent(d, c, 4);
    await marked(c.id, d.id);
  });

  it("a chat the directory does not list yet makes no discrepancy: the run finds its messages in the pair's chat", async () => {
    const admin = await seedUser({ role: "admin" });
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    chatFaults.failSummaries = true;
    try {
      const transfers = [await sent(a, b, 5), await sent(b, a, 2)];
      expect(await carries(a.id, b.id)).toBeUndefined();
      const run = await runToCompletion(admin.token);
      const ours = (run.discrepancies as Found[]).filter(
        (found) => transfers.includes(found.transferId ?? "") || [a.id, b.id].includes(found.userId ?? ""),
      );
      expect(ours).toEqual([]);
    } finally {
      chatFaults.failSummaries = false;
    }
  });
});

describe("the walk of chats", () => {
  it("adds each chat's transfer messages up per user: sent by the sender, received by the other member", async () => {
    const [a, b, c] = await Promise.all([seedWalletUser(), seedWalletUser(), seedWalletUser()]);
    await sent(a, b, 25);
    await sent(b, a, 5);
    await sent(a, c, 7);
    await Promise.all([marked(a.id, b.id), marked(a.id, c.id)]);
    const store = memoryMessageTotals();
    const pages = await walkAll(store, undefined, 2);
    expect(pages.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...pages.map((p) => p.subrequests))).toBeLessThanOrEqual(2 + 4);
    const totals = await store.read([a.id, b.id, c.id]);
    expect(totals.get(a.id)).toEqual({ sent: { count: 2, amount: 32 }, received: { count: 1, amount: 5 } });
    expect(totals.get(b.id)).toEqual({ sent: { count: 1, amount: 5 }, received: { count: 1, amount: 25 } });
    expect(totals.get(c.id)).toEqual({ sent: { count: 0, amount: 0 }, received: { count: 1, amount: 7 } });
  });

  it("counts only transfers below the settled bound", async () => {
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    await sent(a, b, 10);
    const later = await sent(a, b, 20);
    await marked(a.id, b.id);
    const chatId = (await directChatIdOf(a.id, b.id))!;
    const chat = chatStub(env, chatId);
    expect((await chat.transferTotals(chatId, null)).senders).toEqual([{ senderId: a.id, count: 2, amount: 30 }]);
    expect((await chat.transferTotals(chatId, later)).senders).toEqual([{ senderId: a.id, count: 1, amount: 10 }]);
    const store = memoryMessageTotals();
    await walkAll(store, later);
    expect((await store.read([b.id])).get(b.id)?.received).toEqual({ count: 1, amount: 10 });
  });

  it("in D1, a retried page adds nothing twice and answers as the first time", async () => {
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    await sent(a, b, 6);
    await marked(a.id, b.id);
    const store = d1MessageTotals(env, newId());
    const before = settledBefore(Date.now());
    const first = await walkChatPage(env, store, 1, "", before, 1_000);
    const again = await walkChatPage(env, store, 1, "", before, 1_000);
    expect({ ...again, subrequests: 0 }).toEqual({ ...first, subrequests: 0 });
    expect(again.subrequests).toBe(1);
    expect((await store.read([a.id])).get(a.id)?.sent).toEqual({ count: 1, amount: 6 });
  });
});
