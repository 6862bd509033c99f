import { introspectWorkflowInstance, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { newId } from "../src/lib/ids";
import { type AdminCommandParams, runAdminCommand } from "../src/services/admin-command";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";

/**
 * The operator command's server side (`npm run admin`; src/workflows/admin-command-workflow.ts,
 * src/services/admin-command.ts): the role changed by its owner, the user's object, with its audit
 * row, and the D1 index following; a stranger's id answered "no account" without creating storage.
 */
const command = (action: AdminCommandParams["action"], userId: string): AdminCommandParams => ({
  action,
  userId,
  operator: "ops",
  runId: crypto.randomUUID(),
});

const auditRows = async (userId: string) =>
  (
    await env.DB.prepare(
      "SELECT actor_id, action, target_id, detail, request_id FROM admin_audit WHERE target_id = ? ORDER BY created_at, id",
    )
      .bind(userId)
      .all<{ actor_id: string; action: string; target_id: string; detail: string; request_id: string }>()
  ).results;

const indexedRole = async (userId: string) =>
  (await env.DB.prepare("SELECT role FROM users WHERE id = ?").bind(userId).first<{ role: string }>())?.role;

describe("the operator command's step (runAdminCommand)", () => {
  it("grant: the owner makes an admin, with its audit row (actor operator) and the D1 index; the user's token works at once", async () => {
    const user = await seedUser({ email: `Ops-${newId()}@example.com`, displayName: "Made Admin" });
    expectError(await call("GET", "/api/v1/admin/audit", { token: user.token }), 403, "insufficient_permissions");
    const grant = command("grant", user.id);
    const { account } = await runAdminCommand(env, grant);
    expect(account).toEqual({
      id: user.id,
      email: user.email,
      displayName: "Made Admin",
      role: "admin",
      status: "active",
      createdAt: expect.any(Number),
      version: 1,
    });
    expect(await indexedRole(user.id)).toBe("admin");
    const [row, ...more] = await auditRows(user.id);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ actor_id: "operator", action: "role_grant", target_id: user.id, request_id: grant.runId });
    expect(JSON.parse(row!.detail)).toEqual({ role: "admin", previousRole: "user", operator: "ops", via: "npm run admin" });
    // The token says `user`; its owner says admin.
    const audit = await call("GET", "/api/v1/admin/audit", { token: user.token });
    expect(audit.status).toBe(200);
    expect(audit.json.data.items).toContainEqual(expect.objectContaining({ action: "role_grant", actorId: "operator" }));
  });

  it("a grant to an admin changes nothing and records nothing; a revoke is recorded and the next admin request is 403", async () => {
    const admin = await seedUser({ role: "admin" });
    expect((await runAdminCommand(env, command("grant", admin.id))).account).toMatchObject({ role: "admin", version: 0 });
    expect(await auditRows(admin.id)).toEqual([]);
    const revoke = command("revoke", admin.id);
    expect((await runAdminCommand(env, revoke)).account).toMatchObject({ role: "user", version: 1 });
    expect(await indexedRole(admin.id)).toBe("user");
    const rows = await auditRows(admin.id);
    expect(rows.map((row) => [row.action, row.request_id])).toEqual([["role_revoke", revoke.runId]]);
    expect(JSON.parse(rows[0]!.detail)).toMatchObject({ role: "user", previousRole: "admin" });
    expectError(await call("GET", "/api/v1/admin/audit", { token: admin.token }), 403, "insufficient_permissions");
    // A revoke of a user: nothing more.
    await runAdminCommand(env, command("revoke", admin.id));
    expect(await auditRows(admin.id)).toHaveLength(1);
  });

  it("show reads the owner (not the index) and changes nothing", async () => {
    const user = await seedUser();
    await env.DB.prepare("UPDATE users SET role = 'admin' WHERE id = ?").bind(user.id).run();
    expect((await runAdminCommand(env, command("show", user.id))).account).toMatchObject({ role: "user", version: 0 });
    expect(await auditRows(user.id)).toEqual([]);
  });

  it("an id no registration opened: no account, and no storage made for it", async () => {
    const stranger = newId();
    for (const action of ["grant", "revoke", "show"] as const) {
      expect(await runAdminCommand(env, command(action, stranger))).toEqual({ account: null });
    }
    const tables = await runInDurableObject(walletStub(env, stranger), (_instance, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'").toArray(),
    );
    expect(tables).toEqual([]);
    expect(await auditRows(stranger)).toEqual([]);
  });
});

describe("the operator command as a Workflow instance (ADMIN_COMMAND)", () => {
  it("an instance's output is the account after the command, as the script reads it back", async () => {
    const user = await seedUser();
    const params = command("grant", user.id);
    await using instance = await introspectWorkflowInstance(env.ADMIN_COMMAND, params.runId);
    await env.ADMIN_COMMAND.create({ id: params.runId, params });
    await instance.waitForStatus("complete");
    expect(await instance.getOutput()).toEqual({ account: expect.objectContaining({ id: user.id, role: "admin" }) });
    expect((await call("GET", "/api/v1/admin/audit", { token: user.token })).status).toBe(200);
  });

  it("a stranger's id completes with no account; params that are not a command fail the instance at once", async () => {
    const unknown = command("grant", newId());
    await using none = await introspectWorkflowInstance(env.ADMIN_COMMAND, unknown.runId);
    await env.ADMIN_COMMAND.create({ id: unknown.runId, params: unknown });
    await none.waitForStatus("complete");
    expect(await none.getOutput()).toEqual({ account: null });

    const runId = crypto.randomUUID();
    await using bad = await introspectWorkflowInstance(env.ADMIN_COMMAND, runId);
    await env.ADMIN_COMMAND.create({ id: runId, params: { action: "grant", email: "a@b.c", operator: "ops", runId } });
    await bad.waitForStatus("errored");
    expect((await bad.getError()).message).toContain("invalid admin command");
  });
});
