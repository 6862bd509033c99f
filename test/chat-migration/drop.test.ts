import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call, expectError } from "../support/http";
import {
  allPages,
  expectKeyMoved,
  expectMovedExactly,
  legacyId,
  objectRows,
  runInProcess,
  runWorkflow,
  seedLegacyChat,
  seedLegacyKey,
} from "./support";

/** The tables D1 has now. */
async function tables(): Promise<string[]> {
  const rows = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all<{ name: string }>();
  return rows.results.map((row) => row.name);
}

describe("after a completed migration, migrations-after-chat-move/ drops what moved", () => {
  it("and the API answers as before: the same pages, old keys, edits and deletes of legacy ids, new sends", async () => {
    const chat = await seedLegacyChat(640);
    const small = await seedLegacyChat(9);
    const [alice, bob] = chat.members;
    const key = await seedLegacyKey(chat, { seq: 639, userId: alice!.id, stored: false });
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (user_id, key, fingerprint, outcome_in, created_at) VALUES (?, 'a-transfer-key', 'f', ?, ?)",
    )
      .bind(alice!.id, `transfer:${alice!.id}`, Date.now())
      .run();
    const { output } = await runInProcess();
    expect(output).toMatchObject({ continuedAs: null, legacyGone: false, totals: { strays: 0, messages: 649 } });
    for (const c of [chat, small]) await expectMovedExactly(c);
    const before = await allPages(chat);

    await applyD1Migrations(env.DB, env.TEST_MIGRATIONS_AFTER_CHAT_MOVE);
    expect(await tables()).not.toContain("messages");
    expect(await tables()).toContain("message_routes");
    const keys = await env.DB.prepare("SELECT key FROM idempotency_keys WHERE user_id = ?").bind(alice!.id).all();
    expect(keys.results).toEqual([{ key: "a-transfer-key" }]);

    expect(await allPages(chat)).toEqual(before);
    // Legacy ids carry no route tag: their chat is found in message_routes.
    const edited = await call("PATCH", `/api/v1/messages/${legacyId(chat.chatId, 1)}`, {
      token: alice!.token,
      body: { content: "after the drop" },
    });
    expect(edited.status, edited.text).toBe(200);
    expect(edited.json.data).toMatchObject({ seq: 1, content: "after the drop", chatId: chat.chatId });
    const removed = await call("DELETE", `/api/v1/messages/${legacyId(chat.chatId, 2)}`, { token: bob!.token });
    expect(removed.status, removed.text).toBe(200);
    expectError(
      await call("DELETE", `/api/v1/messages/${legacyId(chat.chatId, 3)}`, { token: bob!.token }),
      403,
      "insufficient_permissions",
    );
    expectError(
      await call("DELETE", `/api/v1/messages/${legacyId(chat.chatId, 999)}`, { token: bob!.token }),
      404,
      "message_not_found",
    );

    // An old key still answers its outcome from its chat, and the wallet still holds it.
    await expectKeyMoved(chat.chatId, alice!.id, key);
    const retry = await call("POST", "/api/v2/messages", {
      token: alice!.token,
      body: key.body,
      headers: { "Idempotency-Key": key.key },
    });
    expect(retry.status, retry.text).toBe(201);
    expect(retry.json.data).toMatchObject({ id: key.messageId, seq: 639 });
    const sent = await call("POST", "/api/v2/messages", { token: bob!.token, body: { chatId: chat.chatId, content: "new" } });
    expect(sent.status, sent.text).toBe(201);
    expect(sent.json.data.seq).toBe(641);
    expect(await objectRows(chat.chatId, "SELECT last_seq FROM chat")).toEqual([{ last_seq: 641 }]);

    // A run after the drop has nothing to read, and says so.
    const late = await runWorkflow();
    expect(late).toMatchObject({ status: "completed", legacyGone: true, messages: 0 });
  });
});
