import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { chatStub } from "../../src/services/chat-objects";

/**
 * Writes what each chat object owes the D1 directory now (its alarm: durable-objects/chat/
 * summary.ts), instead of waiting the up-to-1 s the API allows, for suites that read the chat
 * list right after a change. Chats owing nothing are left alone.
 */
export async function flushDirectory(chatIds: Iterable<string>): Promise<void> {
  for (const chatId of new Set(chatIds)) await runDurableObjectAlarm(chatStub(env, chatId));
}
