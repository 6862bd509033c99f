import { createExecutionContext, createScheduledController, introspectWorkflow, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import worker from "../src";
import { IDEMPOTENCY_RETENTION_MS } from "../src/lib/idempotency";
import { newId } from "../src/lib/ids";
import { PURGE_BATCH, PURGE_TIME_BUDGET_MS, purgeExpired } from "../src/services/maintenance";

/** The scheduled handler runs at a fake "now": every row below is placed relative to it. */
const NOW = Date.UTC(2026, 5, 1, 3, 17);
const HOUR = 3_600_000;

async function idempotencyRow(label: string, createdAt: number) {
  await env.DB.prepare("INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at) VALUES (?, ?, 'f', ?)")
    .bind(newId(), label, createdAt)
    .run();
}

const labels = async (table: "idempotency_keys", column: "key") =>
  (await env.DB.prepare(`SELECT ${column} AS label FROM ${table} ORDER BY ${column}`).all<{ label: string }>()).results.map(
    (row) => row.label,
  );

/** `rows` keys past their retention, of users `<prefix>0`, `<prefix>1`, … */
async function seedExpiredKeys(prefix: string, rows: number) {
  const values = Array.from({ length: rows }, (_, i) => `('${prefix}${i}', 'k', 'f', ${NOW - 2 * IDEMPOTENCY_RETENTION_MS})`);
  for (let i = 0; i < values.length; i += 400) {
    await env.DB.prepare(
      `INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at) VALUES ${values.slice(i, i + 400).join(",")}`,
    ).run();
  }
}

describe("the scheduled handler (Cron Trigger)", () => {
  it("purges what nothing needs any more, keeps the rest, and starts the daily reconciliation run", async () => {
    await idempotencyRow("expired", NOW - IDEMPOTENCY_RETENTION_MS - 1);
    await idempotencyRow("expired-in-flight", NOW - 30 * HOUR);
    await idempotencyRow("kept-23h", NOW - 23 * HOUR);
    await idempotencyRow("kept-fresh", NOW - 1000);
    await using introspector = await introspectWorkflow(env.RECONCILIATION);
    const logs = vi.spyOn(console, "log").mockImplementation(() => {});
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: NOW, cron: "17 3 * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);

    expect(await labels("idempotency_keys", "key")).toEqual(["kept-23h", "kept-fresh"]);
    const run = await env.DB.prepare("SELECT id, trigger, cutoff_at FROM reconciliation_runs").first<{
      id: string;
      trigger: string;
      cutoff_at: number;
    }>();
    expect(run).toMatchObject({ trigger: "scheduled", cutoff_at: NOW });
    const [instance] = await introspector.get();
    await instance!.waitForStatus("complete");
    const lines = logs.mock.calls.map(([line]) => JSON.parse(String(line)));
    expect(lines).toContainEqual(expect.objectContaining({ event: "scheduled", runId: run!.id, started: true }));
    expect(lines).toContainEqual(expect.objectContaining({ event: "scheduled", purged: { idempotencyKeys: 2 } }));
    logs.mockRestore();
  });

  it("purges in bounded batches until nothing expired is left", async () => {
    const rows = PURGE_BATCH * 2 + 37;
    await seedExpiredKeys("u", rows);
    const batches = vi.spyOn(env.DB, "prepare");
    expect(await purgeExpired(env, NOW)).toEqual({ idempotencyKeys: rows });
    // Three full-or-partial batches for the keys.
    expect(batches.mock.calls.filter(([statement]) => statement.includes("idempotency_keys"))).toHaveLength(3);
    batches.mockRestore();
    expect(await purgeExpired(env, NOW)).toEqual({ idempotencyKeys: 0 });
  });

  it("stops a table's purge when its time budget is spent, and the next run goes on", async () => {
    const rows = PURGE_BATCH * 2 + 5;
    await seedExpiredKeys("b", rows);
    // Each reading of the clock is a budget later than the one before: one batch, then stop.
    let clock = Date.now();
    const now = vi.spyOn(Date, "now").mockImplementation(() => (clock += PURGE_TIME_BUDGET_MS));
    expect(await purgeExpired(env, NOW)).toEqual({ idempotencyKeys: PURGE_BATCH });
    now.mockRestore();
    expect(await purgeExpired(env, NOW)).toEqual({ idempotencyKeys: rows - PURGE_BATCH });
  });
});
