import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { getChatMigration, startChatMigration } from "../../src/services/chat-migration/runs";
import { call } from "../support/http";
import { seedUser } from "../support/users";
import {
  expectKeyMoved,
  expectMovedExactly,
  type LegacyChat,
  moved,
  objectRows,
  seedLegacyChat,
  seedLegacyKey,
  waitForMigration,
} from "./support";

/** Pages a reader of the big chat sees: the newest three, and catch-up pages from three points. */
async function samplePages(chat: LegacyChat) {
  const token = chat.members[1]!.token;
  const base = `/api/v1/messages/chat/${chat.chatId}`;
  const pages: unknown[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 3; i += 1) {
    const res = await call("GET", `${base}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { token });
    expect(res.status, res.text).toBe(200);
    pages.push(res.json.data);
    cursor = res.json.data.nextCursor;
  }
  for (const afterSeq of [0, 49_950, 99_990]) {
    const res = await call("GET", `${base}?limit=100&afterSeq=${afterSeq}`, { token });
    expect(res.status, res.text).toBe(200);
    pages.push(res.json.data);
  }
  return pages;
}

describe("a deployment with a chat of 100,000 messages among others", () => {
  it("moves exactly through the Workflow while the chat keeps answering the same pages; a second run moves nothing", {
    timeout: 600_000,
  }, async () => {
    let clock = Date.now();
    const lap = () => {
      const ms = Date.now() - clock;
      clock = Date.now();
      return ms;
    };
    const big = await seedLegacyChat(100_000);
    const others: LegacyChat[] = [];
    for (let i = 0; i < 30; i += 1) others.push(await seedLegacyChat((i * 37) % 120, 2 + (i % 3)));
    others.push(await seedLegacyChat(2_345));
    const key = await seedLegacyKey(big, { seq: 99_999, userId: big.members[0]!.id, stored: false });
    const seeded = others.reduce((n, chat) => n + chat.count, big.count);
    console.log(`seeded ${seeded} messages in ${others.length + 1} chats: ${lap()} ms`);

    const before = await samplePages(big);
    const admin = await seedUser({ role: "admin" });
    const started = await call("POST", "/api/v1/admin/chat-migrations", { token: admin.token });
    expect(started.status, started.text).toBe(202);
    // The API keeps answering while the Workflow runs: the same pages, whatever has moved so far.
    const seen: number[] = [];
    while ((await getChatMigration(env, started.json.data.id)).status === "running") {
      const [meta] = await objectRows<{ imported_up_to: number }>(big.chatId, "SELECT imported_up_to FROM chat");
      expect(await samplePages(big)).toEqual(before);
      seen.push(meta?.imported_up_to ?? 0);
      // Reads every second, so the reading does not slow the run it is timed beside.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    const first = await waitForMigration(started.json.data.id, 600_000);
    console.log(
      `moved through the Workflow in ${lap()} ms (${first.steps} steps); read the same pages meanwhile at imported_up_to ${seen.join(", ")}`,
    );
    expect(first).toMatchObject({ status: "completed", strays: 0, error: null });
    expect(moved(first)).toEqual({ keys: 1, walletKeys: 1, markers: 0, messages: seeded });
    expect(await samplePages(big)).toEqual(before);

    for (const chat of [big, ...others]) await expectMovedExactly(chat);
    await expectKeyMoved(big.chatId, big.members[0]!.id, key);
    console.log(`compared with D1: ${lap()} ms`);

    const second = await waitForMigration((await startChatMigration(env)).id, 120_000);
    expect(moved(second)).toEqual({ keys: 0, walletKeys: 0, markers: 0, messages: 0 });
    console.log(`second run: ${lap()} ms, ${second.steps} steps`);
  });
});
