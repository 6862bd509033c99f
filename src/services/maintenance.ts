import { IDEMPOTENCY_RETENTION_MS } from "../lib/idempotency";
import { log } from "../lib/log";
import { startRun } from "./reconciliation/runs";

/**
 * What the Cron Trigger runs (src/index.ts `scheduled`, wrangler.toml `[triggers]`): the daily
 * reconciliation run and the purge of D1 rows nothing needs any more. Each purge deletes in
 * batches of PURGE_BATCH rows until nothing expired is left, stopping early after
 * PURGE_MAX_BATCHES batches (a million rows) or PURGE_TIME_BUDGET_MS per table, far inside a Cron
 * Trigger's limits; a larger backlog shrinks over the next days. This is what bounds
 * `idempotency_keys`: a keyed request's claim takes over an expired row of its own key, but no
 * request purges the others.
 *
 * Not purged here: realtime tickets live in each user's RealtimeDO (hashed, 60 s, at most 50 per
 * user, expired ones deleted whenever a ticket is issued or used) and a cron cannot enumerate
 * objects; wallet idempotency records and ended sessions are dropped by each user's object's own
 * alarm (durable-objects/wallet/sessions.ts).
 */
export const PURGE_BATCH = 500;
export const PURGE_MAX_BATCHES = 2_000;
export const PURGE_TIME_BUDGET_MS = 60_000;

export type PurgeCounts = { idempotencyKeys: number };

/** Rows that can go: `idempotency_keys` older than the retention (API.md: at least 24 h), in flight or not. */
export async function purgeExpired(env: Env, now: number): Promise<PurgeCounts> {
  const idempotencyKeys = await purgeInBatches(
    env,
    `DELETE FROM idempotency_keys WHERE rowid IN
       (SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT ${PURGE_BATCH})`,
    now - IDEMPOTENCY_RETENTION_MS,
  );
  return { idempotencyKeys };
}

async function purgeInBatches(env: Env, statement: string, ...bounds: number[]): Promise<number> {
  const deadline = Date.now() + PURGE_TIME_BUDGET_MS;
  let total = 0;
  for (let i = 0; i < PURGE_MAX_BATCHES; i += 1) {
    const result = await env.DB.prepare(statement)
      .bind(...bounds)
      .run();
    total += result.meta.changes;
    if (result.meta.changes < PURGE_BATCH || Date.now() >= deadline) break;
  }
  return total;
}

/** The scheduled handler's work: the daily run (joined if one is running) and the purge. Never throws. */
export async function runScheduled(env: Env, scheduledTime: number): Promise<void> {
  const [run, purge] = await Promise.allSettled([
    startRun(env, "scheduled", null, scheduledTime),
    purgeExpired(env, scheduledTime),
  ]);
  const at = { scheduledTime: new Date(scheduledTime).toISOString() };
  if (run.status === "fulfilled") log.info("scheduled", { ...at, runId: run.value.run.id, started: run.value.created });
  else log.error("scheduled", { ...at, task: "reconciliation", error: run.reason });
  if (purge.status === "fulfilled") log.info("scheduled", { ...at, purged: purge.value });
  else log.error("scheduled", { ...at, task: "purge", error: purge.reason });
}
