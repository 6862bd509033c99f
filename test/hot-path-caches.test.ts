import { env } from "cloudflare:workers";
import { eq, inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { batchPrepared, preparedPerDatabase } from "../src/db/prepared";
import { idempotencyKeys, users } from "../src/db/schema";
import { getConfig } from "../src/lib/config";
import { directChatIdOf } from "../src/lib/direct-chat";
import { newId } from "../src/lib/ids";
import { signAccessToken, verifyAccessToken } from "../src/lib/jwt";
import { chatsOfMessageId } from "../src/services/chat-objects";
import { createDirectChat, memberLimitsOf } from "../src/services/chats";
import { findUser } from "../src/services/users";
import { call } from "./support/http";
import { seedUser } from "./support/users";

/** What the hot-path caches of issue 12 keep across requests must never mix bindings, secrets or rows. */
describe("hot-path caches", () => {
  it("builds Drizzle once per D1 binding, and a different binding gets its own", () => {
    expect(createDb(env.DB)).toBe(createDb(env.DB));
    const other = { ...env.DB } as D1Database;
    expect(createDb(other)).not.toBe(createDb(env.DB));
  });

  it("keeps one key id per secret: a token signed under one secret is refused under another, both ways", async () => {
    const config = getConfig(env);
    const a = { ...config, jwtSecret: "first-secret-of-at-least-thirty-two-bytes!" };
    const b = { ...config, jwtSecret: "second-secret-of-at-least-thirty-two-bytes" };
    const user = { id: "0123456789abcdef01234567", role: "user" as const, sessionId: "0123456789abcdef01234568" };
    const tokenA = await signAccessToken(a, user);
    const tokenB = await signAccessToken(b, user);
    // Both keys are cached now; each must still verify only its own tokens.
    await expect(verifyAccessToken(a, tokenA)).resolves.toEqual(user);
    await expect(verifyAccessToken(b, tokenB)).resolves.toEqual(user);
    await expect(verifyAccessToken(a, tokenB)).rejects.toMatchObject({ code: "invalid_token" });
    await expect(verifyAccessToken(b, tokenA)).rejects.toMatchObject({ code: "invalid_token" });
  });

  it("binds the prepared by-id read per call: each id gets its own row, a missing id none, a change is seen", async () => {
    const db = createDb(env.DB);
    const first = await seedUser({ displayName: "Cache First" });
    const second = await seedUser({ displayName: "Cache Second" });
    expect((await findUser(db, first.id))?.displayName).toBe("Cache First");
    expect((await findUser(db, second.id))?.displayName).toBe("Cache Second");
    expect(await findUser(db, "ffffffffffffffffffffffff")).toBeUndefined();
    await db.update(users).set({ displayName: "Cache Renamed" }).where(eq(users.id, first.id));
    expect((await findUser(db, first.id))?.displayName).toBe("Cache Renamed");
  });

  it("batches queries prepared once with each call's values, mapped as Drizzle maps them", async () => {
    const db = createDb(env.DB);
    let builds = 0;
    const prepared = preparedPerDatabase((database) => {
      builds += 1;
      return [
        database
          .select()
          .from(users)
          .where(eq(users.id, sql.placeholder("a")))
          .prepare(),
        database
          .select({ name: users.displayName })
          .from(users)
          .where(eq(users.id, sql.placeholder("b")))
          .prepare(),
      ] as const;
    });
    const a = await seedUser({ displayName: "Prepared A" });
    const b = await seedUser({ displayName: "Prepared B" });
    const [rowsA, namesB] = await batchPrepared(db, prepared(db), { a: a.id, b: b.id });
    expect(rowsA).toHaveLength(1);
    expect(rowsA[0]).toMatchObject({ id: a.id, displayName: "Prepared A", createdAt: expect.any(Number) });
    expect(namesB).toEqual([{ name: "Prepared B" }]);
    const [rowsB, namesA] = await batchPrepared(db, prepared(db), { a: b.id, b: a.id });
    expect(rowsB[0]?.id).toBe(b.id);
    expect(namesA).toEqual([{ name: "Prepared A" }]);
    expect(builds).toBe(1);
    // One set of values per query, or the batch is refused before it is sent.
    await expect(batchPrepared(db, prepared(db), [{ a: a.id, b: b.id }])).rejects.toThrow(/2 queries but 1 sets of values/);
  });

  it("the direct-chat and route-tag caches never mix pairs or chats", async () => {
    const db = createDb(env.DB);
    const [a, b, c] = [await seedUser(), await seedUser(), await seedUser()];
    const LIMITS = memberLimitsOf(getConfig(env));
    const ab = (await createDirectChat(env, a.id, b.id, LIMITS)).chat.id;
    const ac = (await createDirectChat(env, a.id, c.id, LIMITS)).chat.id;
    for (const [x, y, chatId] of [
      [a.id, b.id, ab],
      [b.id, a.id, ab],
      [a.id, c.id, ac],
      [c.id, a.id, ac],
    ] as const) {
      expect(await directChatIdOf(x, y)).toBe(chatId);
    }
    // A pair's chat id is derived from the pair, whether or not the chat exists yet.
    expect(await directChatIdOf(b.id, c.id)).not.toBe(ab);
    expect((await call("GET", `/api/v1/chats/${await directChatIdOf(b.id, c.id)}`, { token: b.token })).status).toBe(404);
    const send = async (user: typeof a, recipientId: string, content: string) =>
      (await call("POST", "/api/v1/messages", { token: user.token, body: { recipientId, content } })).json.data;
    const inAb = await send(a, b.id, "to b");
    const inAc = await send(c, a.id, "to a");
    expect([inAb.chatId, inAc.chatId]).toEqual([ab, ac]);
    // Each message id names its own chat, asked in either order and twice (the second from the cache).
    for (let i = 0; i < 2; i++) {
      expect(await chatsOfMessageId(db, inAc.id)).toEqual([ac]);
      expect(await chatsOfMessageId(db, inAb.id)).toEqual([ab]);
    }
    expect(await chatsOfMessageId(db, newId())).toEqual([]);
  });
});
