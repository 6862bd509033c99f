import { and, asc, desc, eq, gte, sql } from "drizzle-orm";
import { createDb } from "../../db/client";
import { reconciliationDiscrepancies, reconciliationRuns } from "../../db/schema";
import { type Config, getConfig } from "../../lib/config";
import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import type { DiscrepancyKind, Reconciliation, ReconciliationRun } from "../../schemas/wallet";
import { type AuditActor, auditInsertWhere } from "../audit";
import { inFlightAt } from "./checks";
import { type RunParams, runReconciliation } from "./run";

/**
 * Reconciliation runs (API.md: the runs API and GET /admin/reconciliation): at most one runs at a
 * time; each is a ReconciliationWorkflow instance whose id is the run id; D1 keeps the run, its
 * progress and its report.
 */

/** Discrepancies returned with a run (the count is exact; the full list is in D1). */
export const REPORTED_DISCREPANCIES = 500;
/** A completed run younger than this answers GET /admin/reconciliation without starting another. */
export const REPORT_FRESH_MS = 24 * 60 * 60 * 1000;
/** How long GET /admin/reconciliation waits for a run it started. */
export const REPORT_WAIT_MS = 20_000;
const POLL_MS = 250;
/** Slack past the void deadline within which a debit may still be finishing at the cut. */
const IN_FLIGHT_SLACK_MS = 10 * 60 * 1000;

type RunRow = typeof reconciliationRuns.$inferSelect;
type Trigger = RunRow["trigger"];

export function runParams(config: Config, runId: string, now: number): RunParams {
  return {
    runId,
    cutoffAt: now,
    inFlightHorizonMs: config.transferVoidAfterMs + IN_FLIGHT_SLACK_MS,
  };
}

/**
 * Starts a run, or answers the one already running (`created: false`). A row left `running` by an
 * instance that no longer runs (terminated, errored without reaching its own failure step) is
 * closed as failed first, so it cannot block runs forever. A run an admin started (`startedBy`;
 * null: the schedule) is recorded in the audit log in the batch that records the run, and only
 * if it did.
 */
export async function startRun(
  env: Env,
  trigger: Trigger,
  startedBy: AuditActor | null,
  now = Date.now(),
  tuning: Pick<RunParams, "walletsPerPage"> = {},
): Promise<{ run: ReconciliationRun; created: boolean }> {
  const db = createDb(env.DB);
  const running = await runningRun(env, now);
  if (running) return { run: await toRun(env, running), created: false };
  const runId = newId(now);
  const params = { ...runParams(getConfig(env), runId, now), ...tuning };
  const insertRun = db
    .insert(reconciliationRuns)
    .values({
      id: runId,
      status: "running",
      trigger,
      startedBy: startedBy?.actorId ?? null,
      startedAt: now,
      cutoffAt: params.cutoffAt,
    })
    .onConflictDoNothing()
    .returning();
  const [inserted] = startedBy
    ? await db.batch([
        insertRun,
        auditInsertWhere(
          db,
          startedBy,
          { action: "reconciliation_start", targetId: runId, detail: { trigger } },
          sql`EXISTS (SELECT 1 FROM ${reconciliationRuns} WHERE ${reconciliationRuns.id} = ${runId})`,
          now,
        ),
      ])
    : [await insertRun];
  if (inserted.length === 0) {
    // Another start won the race for the one running slot.
    const winner = await runningRun(env, now);
    if (winner) return { run: await toRun(env, winner), created: false };
    throw new Error("a reconciliation run could not be recorded");
  }
  try {
    await env.RECONCILIATION.create({ id: runId, params });
  } catch (error) {
    await markRunFailed(env, runId, `the workflow did not start: ${error instanceof Error ? error.message : String(error)}`);
    throw error;
  }
  return { run: await toRun(env, inserted[0]!), created: true };
}

async function runningRun(env: Env, now: number): Promise<RunRow | null> {
  const db = createDb(env.DB);
  const row = (await db.select().from(reconciliationRuns).where(eq(reconciliationRuns.status, "running")).limit(1).all())[0];
  if (!row) return null;
  if (await instanceAlive(env, row, now)) return row;
  await markRunFailed(env, row.id, "the workflow instance stopped before the run finished");
  return null;
}

/** A row is created just before its instance: an instance not found is only dead once the row is a minute old. */
const INSTANCE_GRACE_MS = 60_000;

async function instanceAlive(env: Env, row: RunRow, now: number): Promise<boolean> {
  let status: string;
  try {
    status = (await (await env.RECONCILIATION.get(row.id)).status()).status;
  } catch {
    return now - row.startedAt < INSTANCE_GRACE_MS;
  }
  // `complete` with the row still running means the finish step was lost: not alive either.
  return !["errored", "terminated", "complete"].includes(status);
}

export async function markRunFailed(env: Env, runId: string, error: string): Promise<void> {
  await createDb(env.DB)
    .update(reconciliationRuns)
    .set({ status: "failed", finishedAt: Date.now(), error: error.slice(0, 1000) })
    .where(and(eq(reconciliationRuns.id, runId), eq(reconciliationRuns.status, "running")));
}

/** A run with its progress and (when completed) its report; 404 `not_found` for an unknown id. */
export async function getRun(env: Env, runId: string): Promise<ReconciliationRun> {
  const row = (await createDb(env.DB).select().from(reconciliationRuns).where(eq(reconciliationRuns.id, runId)).all())[0];
  if (!row) throw new ApiError("not_found", [`No reconciliation run ${runId}`]);
  return toRun(env, row);
}

async function toRun(env: Env, row: RunRow): Promise<ReconciliationRun> {
  const findings = await createDb(env.DB)
    .select()
    .from(reconciliationDiscrepancies)
    .where(eq(reconciliationDiscrepancies.runId, row.id))
    .orderBy(asc(reconciliationDiscrepancies.key))
    .limit(REPORTED_DISCREPANCIES)
    .all();
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: row.id,
    status: row.status,
    trigger: row.trigger,
    startedAt: iso(row.startedAt)!,
    finishedAt: iso(row.finishedAt),
    cutoffAt: iso(row.cutoffAt)!,
    walletsChecked: row.walletsChecked,
    pagesDone: row.pagesDone,
    totalBalance: row.totalBalance,
    totalGranted: row.totalGranted,
    pendingTransfers: row.pendingTransfers,
    inFlightAmount: row.inFlightAmount,
    stuckTransfers: row.stuckTransfers,
    discrepancyCount: row.discrepancyCount,
    discrepancies: findings.map(({ kind, userId, transferId, detail }) => ({
      kind: kind as DiscrepancyKind,
      userId,
      transferId,
      detail,
    })),
    error: row.error,
  };
}

function toReport(run: ReconciliationRun): Reconciliation {
  return {
    wallets: run.walletsChecked,
    totalBalance: run.totalBalance ?? 0,
    totalGranted: run.totalGranted ?? 0,
    pendingTransfers: run.pendingTransfers ?? 0,
    inFlightAmount: run.inFlightAmount ?? 0,
    stuckTransfers: run.stuckTransfers ?? 0,
    discrepancyCount: run.discrepancyCount,
    discrepancies: run.discrepancies,
    checkedAt: run.cutoffAt,
    runId: run.id,
  };
}

async function latestCompleted(env: Env, since = 0): Promise<RunRow | undefined> {
  return (
    await createDb(env.DB)
      .select()
      .from(reconciliationRuns)
      .where(and(eq(reconciliationRuns.status, "completed"), gte(reconciliationRuns.startedAt, since)))
      .orderBy(desc(reconciliationRuns.startedAt))
      .limit(1)
      .all()
  )[0];
}

/**
 * GET /admin/reconciliation: the latest completed run's report when it is less than 24 h old.
 * Otherwise a run is started (or the running one joined) and awaited up to 20 s: its report if it
 * completes; if not, the last completed report however old, and with none at all, the run itself
 * (`status: 202`) so the caller can follow it at GET /admin/reconciliations/{id}.
 */
export async function latestReport(
  env: Env,
  admin: AuditActor,
  now = Date.now(),
): Promise<{ status: 200; report: Reconciliation } | { status: 202; run: ReconciliationRun }> {
  const fresh = await latestCompleted(env, now - REPORT_FRESH_MS);
  if (fresh) return { status: 200, report: toReport(await toRun(env, fresh)) };
  const { run } = await startRun(env, "auto", admin, now);
  const deadline = Date.now() + REPORT_WAIT_MS;
  let current = run;
  while (current.status === "running" && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    current = await getRun(env, run.id);
  }
  if (current.status === "completed") return { status: 200, report: toReport(current) };
  const older = await latestCompleted(env);
  if (older) return { status: 200, report: toReport(await toRun(env, older)) };
  return { status: 202, run: current };
}

/**
 * The same run in-process, without the Workflow engine and without storing anything: for tests
 * and tools that need the verdict on quiet books now (the simulation, the crafted-books tests).
 */
export async function reconcile(env: Env, now = Date.now()): Promise<Reconciliation> {
  const params = runParams(getConfig(env), newId(now), now);
  const report = await runReconciliation(env, params, (_name, fn) => fn(), { persist: false });
  return {
    wallets: report.sums.wallets,
    totalBalance: report.sums.balance,
    totalGranted: report.sums.granted,
    pendingTransfers: report.sums.pendingTransfers,
    inFlightAmount: inFlightAt(report.sums),
    stuckTransfers: report.sums.stuckTransfers,
    discrepancyCount: report.findings.length,
    discrepancies: report.findings,
    checkedAt: new Date(params.cutoffAt).toISOString(),
    runId: params.runId,
  };
}
