import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import type { ChatMigration } from "../../schemas/chat-migration";
import { type ChatMigrationOutput, firstParams, type MigrationTotals, NO_TOTALS, type Tuning } from "./run";

/**
 * Chat migration runs for the admin API: a run is a chain of ChatMigrationWorkflow instances
 * (the first one's id is the run's); nothing about it is kept in D1, the Workflow engine has it.
 */

/**
 * Instances followed at most when reading a run (two subrequests each). A full D1 (10 GB, ~20
 * million messages) is ~40,000 page steps: ~45 instances of STEPS_PER_INSTANCE.
 */
const MAX_INSTANCES = 200;

/** Starts a run; answers it as it stands right after the start. */
export async function startChatMigration(env: Env, tuning?: Partial<Tuning>): Promise<ChatMigration> {
  const id = newId();
  await env.CHAT_MIGRATION.create({ id, params: firstParams(id, tuning) });
  return getChatMigration(env, id);
}

/** A run, followed from its first instance to the one working now; 404 `not_found` for an unknown id. */
export async function getChatMigration(env: Env, id: string): Promise<ChatMigration> {
  let current = id;
  let totals: MigrationTotals = NO_TOTALS;
  let legacyGone = false;
  for (let instances = 1; ; instances += 1) {
    const status = await instanceStatus(env, current, id);
    const output = status.status === "complete" ? (status.output as ChatMigrationOutput) : null;
    if (output) ({ totals, legacyGone } = output);
    const next = output?.continuedAs ?? null;
    if (next === null || instances >= MAX_INSTANCES) {
      const error = status.error ? `${status.error.name}: ${status.error.message}` : null;
      return { id, status: runStatus(status.status, next), instances, currentInstance: current, ...totals, legacyGone, error };
    }
    current = next;
  }
}

async function instanceStatus(env: Env, instanceId: string, runId: string): Promise<InstanceStatus> {
  let instance: WorkflowInstance;
  try {
    instance = await env.CHAT_MIGRATION.get(instanceId);
  } catch {
    throw new ApiError("not_found", [`No chat migration ${runId}`]);
  }
  return instance.status();
}

function runStatus(status: InstanceStatus["status"], next: string | null): ChatMigration["status"] {
  if (status === "complete") return next === null ? "completed" : "running";
  return status === "errored" || status === "terminated" ? "failed" : "running";
}
