import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { chatStub } from "../../src/services/chat-objects";
import { chatFaults } from "./test-chat";

/**
 * Writes what each chat object owes the D1 directory now (its alarm: durable-objects/chat/
 * summary.ts), instead of waiting the up-to-1 s the API allows, for suites that read the chat
 * list right after a change. Chats owing nothing are left alone.
 */
export async function flushDirectory(chatIds: Iterable<string>): Promise<void> {
  for (const chatId of new Set(chatIds)) await runDurableObjectAlarm(chatStub(env, chatId));
}

/** Rows of a query run on one chat object's own SQLite (its `messages`, `members`, …), each with `chat_id` added. */
export async function queryChat<T extends Record<string, SqlStorageValue>>(chatId: string, query: string, ...params: unknown[]) {
  return runInDurableObject(chatStub(env, chatId), (_instance, state) =>
    state.storage.sql
      .exec<T>(query, ...params)
      .toArray()
      .map((row) => ({ ...row, chat_id: chatId })),
  );
}

/**
 * Rows of a query run on every chat object (the suites' stand-in for what was one query over D1's
 * `messages` before chats became objects), in id order: those the directory lists and those
 * created but not listed yet (the directory follows behind the answers).
 */
export async function queryEveryChat<T extends Record<string, SqlStorageValue>>(query: string, ...params: unknown[]) {
  const { results } = await env.DB.prepare("SELECT id FROM chats ORDER BY id").all<{ id: string }>();
  const ids = [...new Set([...results.map((row) => row.id), ...chatFaults.created])].sort();
  const rows: (T & { chat_id: string })[] = [];
  for (const id of ids) rows.push(...(await queryChat<T>(id, query, ...params)));
  return rows;
}
