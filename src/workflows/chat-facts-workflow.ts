import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep, type WorkflowStepConfig } from "cloudflare:workers";
import { createDb } from "../db/client";
import { type ChatFactsParams, tellChats, userChatPage } from "../services/chat-facts";

/** Each page is retried until every chat of it has heard (a chat object that failed throws the step). */
const STEP_CONFIG = {
  retries: { limit: 10, delay: "1 second", backoff: "exponential" },
  timeout: "1 minute",
} satisfies WorkflowStepConfig;

/**
 * Tells chat objects a fact (services/chat-facts.ts) beyond what one request may: the listed
 * chats, or every chat of a user page by page after a cursor. Each step is one page; the engine
 * persists it when it returns and retries it when it throws, so a walk that dies resumes at its page.
 */
export class ChatFactsWorkflow extends WorkflowEntrypoint<Env, ChatFactsParams> {
  override async run(event: Readonly<WorkflowEvent<ChatFactsParams>>, step: WorkflowStep): Promise<{ chats: number }> {
    const { facts, userId, chatIds } = event.payload;
    let told = 0;
    if (chatIds) {
      await step.do("listed", STEP_CONFIG, () => tellOrThrow(this.env, chatIds, facts));
      told += chatIds.length;
    }
    let after = event.payload.afterChatId;
    for (let page = 0; userId; page += 1) {
      const ids = await step.do(`page ${page}`, STEP_CONFIG, async () => {
        const chatIdsOfPage = await userChatPage(createDb(this.env.DB), userId, after);
        await tellOrThrow(this.env, chatIdsOfPage, facts);
        return chatIdsOfPage;
      });
      told += ids.length;
      if (ids.length === 0) break;
      after = ids.at(-1);
    }
    return { chats: told };
  }
}

async function tellOrThrow(env: Env, chatIds: readonly string[], facts: ChatFactsParams["facts"]): Promise<void> {
  const failed = await tellChats(env, chatIds, facts);
  if (failed.length > 0) throw new Error(`${failed.length} chats not told yet`);
}
