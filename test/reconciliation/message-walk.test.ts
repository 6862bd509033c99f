import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client";
import { getConfig } from "../../src/lib/config";
import { newId } from "../../src/lib/ids";
import { chatStub, newRouteTag } from "../../src/services/chat-objects";
import { createDirectChat, knownDirectChat, memberLimitsOf } from "../../src/services/chats";
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
import { seedWalletUser } from "../support/wallets";
import { sent } from "./support";

const carries = async (a: string, b: string) =>
  (
    await env.DB.prepare("SELECT carries_transfers AS c FROM chats WHERE direct_key = ?")
      .bind(directKeyOf(a, b))
      .first<{ c: number }>()
  )?.c;

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
  it("are marked before a transfer's message: a new pair's chat when the wallet creates it, a known pair's by the transfer's checks", async () => {
    const [a, b, c, d] = await Promise.all([seedWalletUser(), seedWalletUser(), seedWalletUser(), seedWalletUser()]);
    expect(await carries(a.id, b.id)).toBeUndefined();
    await sent(a, b, 3);
    expect(await carries(a.id, b.id)).toBe(1);
    // A pair that talked first: its chat exists, unmarked, until one of them pays the other.
    await createDirectChat(env, createDb(env.DB), c.id, d.id, memberLimitsOf(getConfig(env)));
    expect(await carries(c.id, d.id)).toBe(0);
    await sent(d, c, 4);
    expect(await carries(c.id, d.id)).toBe(1);
  });
});

describe("the walk of chats", () => {
  it("adds each chat's transfer messages up per user: sent by the sender, received by the other member", async () => {
    const [a, b, c] = await Promise.all([seedWalletUser(), seedWalletUser(), seedWalletUser()]);
    await sent(a, b, 25);
    await sent(b, a, 5);
    await sent(a, c, 7);
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
    const chatId = (await knownDirectChat(createDb(env.DB), a.id, b.id))!;
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
    const store = d1MessageTotals(env, newId());
    const before = settledBefore(Date.now());
    const first = await walkChatPage(env, store, 1, "", before, 1_000);
    const again = await walkChatPage(env, store, 1, "", before, 1_000);
    expect({ ...again, subrequests: 0 }).toEqual({ ...first, subrequests: 0 });
    expect(again.subrequests).toBe(1);
    expect((await store.read([a.id])).get(a.id)?.sent).toEqual({ count: 1, amount: 6 });
  });
});
