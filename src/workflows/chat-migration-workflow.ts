import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep, type WorkflowStepConfig } from "cloudflare:workers";
import {
  type ChatMigrationOutput,
  type ChatMigrationParams,
  type MigrationPosition,
  type MigrationTotals,
  runChatMigration,
} from "../services/chat-migration/run";

/** A page that throws (D1 or an object briefly unavailable) is retried; each is idempotent. */
const STEP_CONFIG = {
  retries: { limit: 5, delay: "2 seconds", backoff: "exponential" },
  timeout: "5 minutes",
} satisfies WorkflowStepConfig;

/**
 * Moves an existing deployment's D1 history into the chat objects (services/chat-migration/run.ts)
 * as a Cloudflare Workflow: every step is persisted by the engine when it returns, retried when it
 * throws and skipped on replay, so an instance whose isolate dies resumes after its last finished
 * step; a step that died half done moves nothing twice when it runs again. Past its step budget an
 * instance starts its successor (`<runId>-<part + 1>`) at its position and completes.
 */
export class ChatMigrationWorkflow extends WorkflowEntrypoint<Env, ChatMigrationParams> {
  override async run(event: Readonly<WorkflowEvent<ChatMigrationParams>>, step: WorkflowStep): Promise<ChatMigrationOutput> {
    const params = event.payload;
    return runChatMigration(
      this.env,
      params,
      // Every step returns plain JSON-able data (numbers, strings, arrays, objects).
      (name, fn) => step.do(name, STEP_CONFIG, fn as () => Promise<Rpc.Serializable<unknown>>) as ReturnType<typeof fn>,
      (position, totals) => startSuccessor(this.env, params, position, totals),
    );
  }
}

/** Creates the next instance of the run; a repeat of this step finds the one it created before. */
async function startSuccessor(
  env: Env,
  params: ChatMigrationParams,
  position: MigrationPosition,
  carried: MigrationTotals,
): Promise<string> {
  const id = `${params.runId}-${params.part + 1}`;
  const next: ChatMigrationParams = { ...params, part: params.part + 1, position, carried };
  try {
    await env.CHAT_MIGRATION.create({ id, params: next });
  } catch (error) {
    // Only "already exists" is fine: the step ran before and died before it was recorded.
    await env.CHAT_MIGRATION.get(id).catch(() => {
      throw error;
    });
  }
  return id;
}
