import { env } from "cloudflare:workers";
import { eq, inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { batchPrepared, preparedPerDatabase } from "../src/db/prepared";
import { idempotencyKeys, users } from "../src/db/schema";
import { getConfig } from "../src/lib/config";
import { signAccessToken, verifyAccessToken } from "../src/lib/jwt";
import type { Message } from "../src/schemas/message";
import { createDirectChat } from "../src/services/chats";
import { newBatchClaim } from "../src/services/idempotency";
import { sendChatMessage } from "../src/services/messages";
import { findUser } from "../src/services/users";
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

  it("binds every v2 send's own values into its prepared shape: keyed or not, with a reply, a client id, interleaved", async () => {
    const db = createDb(env.DB);
    const a = await seedUser();
    const b = await seedUser();
    const c = await seedUser();
    const ab = (await createDirectChat(db, a.id, b.id)).chat.id;
    const ac = (await createDirectChat(db, a.id, c.id)).chat.id;
    const keyed = (userId: string, key: string) => newBatchClaim({ userId, key, fingerprint: `fp-${key}` });
    const first = await sendChatMessage(db, a.id, { chatId: ab, content: "one" });
    const second = await sendChatMessage(
      db,
      b.id,
      { chatId: ab, content: "two", replyToMessageId: first.message.id },
      keyed(b.id, "k2"),
    );
    const third = await sendChatMessage(
      db,
      a.id,
      { chatId: ac, content: "three", clientMessageId: "client-3" },
      keyed(a.id, "k3"),
    );
    const fourth = await sendChatMessage(db, c.id, {
      chatId: ac,
      content: "four",
      replyToMessageId: third.message.id,
      clientMessageId: "client-4",
    });
    const again = await sendChatMessage(db, a.id, { chatId: ac, content: "three", clientMessageId: "client-3" });
    const fifth = await sendChatMessage(db, b.id, { chatId: ab, content: "five" }, keyed(b.id, "k5"));
    const view = ({ message }: { message: Message }) => [
      message.chatId,
      message.seq,
      message.senderId,
      message.content,
      message.replyToMessageId,
      message.clientMessageId,
    ];
    expect([first, second, third, fourth, fifth].map(view)).toEqual([
      [ab, 1, a.id, "one", null, null],
      [ab, 2, b.id, "two", first.message.id, null],
      [ac, 1, a.id, "three", null, "client-3"],
      [ac, 2, c.id, "four", third.message.id, "client-4"],
      [ab, 3, b.id, "five", null, null],
    ]);
    expect(again).toMatchObject({ created: false, message: { id: third.message.id } });
    // The keyed sends stored their own 201s under their own keys.
    const stored = await db
      .select()
      .from(idempotencyKeys)
      .where(inArray(idempotencyKeys.key, ["k2", "k3", "k5"]));
    const bodies = Object.fromEntries(stored.map((row) => [row.key, JSON.parse(row.responseBody ?? "null")?.data?.content]));
    expect(bodies).toEqual({ k2: "two", k3: "three", k5: "five" });
    // A refusal in a prepared shape names its own reason: a reply to a message of another chat.
    await expect(
      sendChatMessage(db, a.id, { chatId: ab, content: "x", replyToMessageId: fourth.message.id }, keyed(a.id, "k6")),
    ).rejects.toMatchObject({ code: "validation_failed" });
  });
});
