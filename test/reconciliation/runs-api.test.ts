import { introspectWorkflow, introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/lib/ids";
import { getRun, startRun } from "../../src/services/reconciliation/runs";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import { rowsOf, seedWalletUser } from "../support/wallets";
import { runToCompletion, sent, waitForRun } from "./support";

describe("admin only, bounded inputs", () => {
  it("403 for non-admins on every route, 404 for an unknown run, 400 for a malformed id", async () => {
    const alice = await seedWalletUser();
    const admin = await seedUser({ role: "admin" });
    expectError(await call("POST", "/api/v1/admin/reconciliations", { token: alice.token }), 403, "insufficient_permissions");
    expectError(
      await call("GET", `/api/v1/admin/reconciliations/${newId()}`, { token: alice.token }),
      403,
      "insufficient_permissions",
    );
    expectError(await call("GET", "/api/v1/admin/reconciliation", { token: alice.token }), 403, "insufficient_permissions");
    expectError(await call("GET", `/api/v1/admin/reconciliations/${newId()}`, { token: admin.token }), 404, "not_found");
    expectError(await call("GET", "/api/v1/admin/reconciliations/nope", { token: admin.token }), 400, "validation_failed");
    expectError(await call("POST", "/api/v1/admin/reconciliations"), 401, "authentication_required");
    const runs = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconciliation_runs").first<{ n: number }>();
    expect(runs!.n).toBe(0);
  });
});

describe("a run", () => {
  it("over quiet books: completed, exact totals, every wallet, no discrepancies", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await sent(alice, bob, 40);
    await sent(bob, alice, 5);
    const run = await runToCompletion(admin.token);
    const users = await env.DB.prepare("SELECT COUNT(*) AS n FROM users").first<{ n: number }>();
    expect(run).toMatchObject({
      status: "completed",
      trigger: "manual",
      walletsChecked: users!.n,
      pendingTransfers: 0,
      inFlightAmount: 0,
      stuckTransfers: 0,
      discrepancyCount: 0,
      discrepancies: [],
      error: null,
    });
    // Every wallet in this file was opened with the welcome grant of 100; transfers moved credits between them.
    const wallets = (await env.DB.prepare("SELECT COUNT(*) AS n FROM users WHERE role = 'user'").first<{ n: number }>())!.n;
    expect(run.totalGranted).toBe(100 * wallets);
    expect(run.totalBalance).toBe(run.totalGranted);
    expect(Date.parse(run.finishedAt)).toBeGreaterThanOrEqual(Date.parse(run.startedAt));
  });
});

describe("one run at a time, and runs that are interrupted", () => {
  it("a second start while one runs answers 200 with the running one; a step that throws is retried and the run ends as an uninterrupted one", async () => {
    const admin = await seedUser({ role: "admin" });
    const a = await seedWalletUser();
    const b = await seedWalletUser();
    await sent(a, b, 30);
    const clean = await runToCompletion(admin.token);

    await using introspector = await introspectWorkflow(env.RECONCILIATION);
    // The first attempt of the page throws; the engine retries it after its backoff (2 s).
    await introspector.modifyAll(async (m) => {
      await m.mockStepError({ name: "page 1" }, new Error("isolate died"), 1);
    });
    const first = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    expect(first.status).toBe(202);
    expect(first.json.data).toMatchObject({ status: "running", walletsChecked: 0, discrepancies: [] });
    const second = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    expect(second.status).toBe(200);
    expect(second.json.data.id).toBe(first.json.data.id);
    const progress = await call("GET", `/api/v1/admin/reconciliations/${first.json.data.id}`, { token: admin.token });
    expect(progress.json.data.status).toBe("running");
    await waitForRun(first.json.data.id);
    const resumed = (await call("GET", `/api/v1/admin/reconciliations/${first.json.data.id}`, { token: admin.token })).json.data;
    const report = (run: typeof clean) => ({
      ...run,
      id: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      cutoffAt: undefined,
    });
    expect(report(resumed)).toEqual(report(clean));
    expect(resumed).toMatchObject({ status: "completed", discrepancies: [] });
  });

  it("a run whose every attempt fails ends `failed` with its reason, and frees the slot", async () => {
    const admin = await seedUser({ role: "admin" });
    await using introspector = await introspectWorkflow(env.RECONCILIATION);
    await introspector.modifyAll(async (m) => {
      await m.disableRetryDelays();
      await m.mockStepError({ name: "page 1" }, new Error("D1 is down"));
    });
    const started = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    const [instance] = await introspector.get();
    await instance!.waitForStatus("errored");
    const failed = (await call("GET", `/api/v1/admin/reconciliations/${started.json.data.id}`, { token: admin.token })).json.data;
    expect(failed).toMatchObject({ status: "failed", error: expect.stringContaining("D1 is down") });
    expect(failed.finishedAt).not.toBeNull();
  });

  it("a row left running by an instance that is gone is closed as failed when the next run starts", async () => {
    const admin = await seedUser({ role: "admin" });
    const ghost = newId();
    const longAgo = Date.now() - 3_600_000;
    await env.DB.prepare(
      "INSERT INTO reconciliation_runs (id, status, trigger, started_at, cutoff_at) VALUES (?, 'running', 'manual', ?, ?)",
    )
      .bind(ghost, longAgo, longAgo)
      .run();
    const started = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    expect(started.status).toBe(202);
    expect(started.json.data.id).not.toBe(ghost);
    await waitForRun(started.json.data.id);
    const old = (await call("GET", `/api/v1/admin/reconciliations/${ghost}`, { token: admin.token })).json.data;
    expect(old).toMatchObject({ status: "failed", error: expect.stringContaining("stopped") });
  });
});

describe("a run over many pages", () => {
  it("restarted mid-way, ends with the same report as an uninterrupted run", async () => {
    const admin = await seedUser({ role: "admin" });
    const people = await Promise.all(Array.from({ length: 9 }, () => seedWalletUser()));
    for (const [i, person] of people.entries()) await sent(person, people[(i + 1) % people.length]!, 3 + i);
    await rowsOf(people[4]!.id, "UPDATE wallet SET balance = balance + 2");
    const pages = { walletsPerPage: 3 };
    const clean = await startRun(env, "manual", { actorId: admin.id, requestId: "test" }, Date.now(), pages);
    await waitForRun(clean.run.id);
    const uninterrupted = await getRun(env, clean.run.id);
    expect(uninterrupted.pagesDone).toBeGreaterThanOrEqual(4);

    const restarted = await startRun(env, "manual", { actorId: admin.id, requestId: "test" }, Date.now(), pages);
    await using instance = await introspectWorkflowInstance(env.RECONCILIATION, restarted.run.id);
    await instance.waitForStepResult({ name: "page 2" });
    await (await env.RECONCILIATION.get(restarted.run.id)).restart();
    await instance.waitForStatus("complete");
    const resumed = await getRun(env, restarted.run.id);
    const report = (run: typeof resumed) => ({
      ...run,
      id: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      cutoffAt: undefined,
    });
    expect(report(resumed)).toEqual(report(uninterrupted));
    expect(resumed.discrepancies.map((d) => [d.kind, d.userId])).toEqual([["wallet_ledger", people[4]!.id]]);
    await rowsOf(people[4]!.id, "UPDATE wallet SET balance = balance - 2");
  });
});

describe("the OpenAPI document", () => {
  it("documents the three routes with operationIds, statuses and every discrepancy kind", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const ops: [string, string, string, string[]][] = [
      [
        "/api/v1/admin/reconciliations",
        "post",
        "startReconciliation",
        ["200", "202", "400", "401", "403", "413", "415", "429", "500"],
      ],
      ["/api/v1/admin/reconciliations/{runId}", "get", "getReconciliationRun", ["200", "400", "401", "403", "404", "429", "500"]],
      ["/api/v1/admin/reconciliation", "get", "getLatestReconciliation", ["200", "202", "401", "403", "429", "500"]],
    ];
    for (const [path, method, operationId, statuses] of ops) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op.operationId).toBe(operationId);
      expect(op.tags).toEqual(["Admin"]);
      expect(Object.keys(op.responses).sort()).toEqual(statuses);
    }
    expect(doc.paths["/api/v1/admin/reconciliations"].post.description).toMatch(/^\*\*Production uyarisi:\*\*/);
    const kinds = doc.components.schemas.Discrepancy.properties.kind;
    expect(kinds.enum).toContain("stuck_transfer");
    expect(kinds.enum).toHaveLength(12);
    for (const kind of kinds.enum) expect(kinds.description).toContain(`\`${kind}\``);
    expect(doc.components.schemas.ReconciliationRun.properties.status.enum).toEqual(["running", "completed", "failed"]);
  });
});
