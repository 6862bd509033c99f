import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";
import {
  DEFAULT_LOCAL_PORT,
  describeAccount,
  describeArgs,
  newRunContext,
  parseArgs,
  type RunContext,
  runState,
  triggerArgs,
  UsageError,
  WORKFLOW_NAMES,
} from "../../scripts/admin.ts";
import { E2E_VARS, type LocalServer, startServer } from "../e2e/support/server.ts";

/**
 * `npm run admin` (scripts/admin.ts): how it reads its arguments, the wrangler calls it makes, and
 * a real run against a local `wrangler dev`, where the role it changes is the owner's (the user's
 * object, through AdminCommandWorkflow) and the API sees it at once.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const run = promisify(execFile);
const ID = "64d15f9e2e6c8f4d5a123456";
const RUN: RunContext = { runId: "run-1", operator: "ops" };

describe("npm run admin: arguments", () => {
  it("reads show/grant/revoke, the environment, the user id and (local only) the dev server's port", () => {
    expect(parseArgs(["grant", "--env", "production", "--user-id", ` ${ID} `])).toEqual({
      action: "grant",
      env: "production",
      userId: ID,
      port: null,
    });
    expect(parseArgs(["revoke", "--user-id", ID, "--env", "local", "--port", "9000"])).toEqual({
      action: "revoke",
      env: "local",
      userId: ID,
      port: 9000,
    });
    expect(parseArgs(["show", "--env", "local", "--user-id", ID]).port).toBe(DEFAULT_LOCAL_PORT);
    expect(parseArgs(["show", "--env", "dev", "--user-id", ID]).action).toBe("show");
  });

  it("refuses anything else with its usage, an email above all (registration proves nobody owns one)", () => {
    const bad = [
      [],
      ["promote", "--env", "local", "--user-id", ID],
      ["grant", "--user-id", ID],
      ["grant", "--env", "staging", "--user-id", ID],
      ["grant", "--env", "local"],
      ["grant", "--env", "local", "--email", "alice@example.com"],
      ["grant", "--env", "local", "--user-id", ID, "--email", "alice@example.com"],
      ["grant", "--env", "local", "--user-id", "64D15F9E2E6C8F4D5A123456"],
      ["grant", "--env", "local", "--user-id", "64d15f9e2e6c8f4d5a12345"],
      ["grant", "--env", "local", "--user-id", `${ID}' OR 1=1 --`],
      ["grant", "--env", "local", "--user-id"],
      ["grant", "--env", "local", "--user-id", "--env"],
      ["grant", "--env", "local", "--env", "dev", "--user-id", ID],
      ["grant", "--env", "local", "--user-id", ID, "--remote", "yes"],
      ["grant", "--env", "production", "--user-id", ID, "--port", "8787"],
      ["grant", "--env", "local", "--user-id", ID, "--port", "0"],
      ["grant", "--env", "local", "--user-id", ID, "--port", "70000"],
      ["grant", "--env", "local", "--user-id", ID, "--port", "87a"],
      // The local database is no longer written directly: the dev server is reached by its port.
      ["grant", "--env", "local", "--user-id", ID, "--persist-to", "/tmp/x"],
    ];
    for (const argv of bad) expect(() => parseArgs(argv), argv.join(" ")).toThrow(UsageError);
    expect(() => parseArgs(["grant", "--env", "local", "--email", "a@b.c"])).toThrow(/--user-id, never by email/);
  });
});

describe("npm run admin: the wrangler calls", () => {
  it("triggers the environment's Workflow, named as wrangler.toml names it, with the run id as the instance id", () => {
    for (const env of ["local", "dev", "production"] as const) {
      const config = unstable_readConfig({ config: path.join(ROOT, "wrangler.toml"), env: env === "local" ? undefined : env });
      const bound = config.workflows.find((workflow: { binding: string }) => workflow.binding === "ADMIN_COMMAND");
      expect(bound?.name, env).toBe(WORKFLOW_NAMES[env]);
      expect(bound?.class_name).toBe("AdminCommandWorkflow");
    }
    const params = JSON.stringify({ action: "grant", userId: ID, operator: "ops", runId: "run-1" });
    const local = parseArgs(["grant", "--env", "local", "--user-id", ID, "--port", "9000"]);
    expect(triggerArgs(local, RUN)).toEqual([
      "workflows",
      "trigger",
      "credit-chat-local-admin-command",
      params,
      "--id",
      "run-1",
      "--local",
      "--port",
      "9000",
      "--json",
    ]);
    const production = parseArgs(["grant", "--env", "production", "--user-id", ID]);
    expect(triggerArgs(production, RUN)).toEqual([
      "workflows",
      "trigger",
      "credit-chat-admin-command",
      params,
      "--id",
      "run-1",
      "--env",
      "production",
      "--json",
    ]);
    expect(describeArgs(production, RUN)).toEqual([
      "workflows",
      "instances",
      "describe",
      "credit-chat-admin-command",
      "run-1",
      "--env",
      "production",
      "--json",
    ]);
  });

  it("a run's id is a UUID, and its operator the OS user", () => {
    expect(newRunContext().runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(newRunContext().operator.length).toBeGreaterThan(0);
  });

  it("reads the instance: running, complete with the account (or none), or failed; describes the account", () => {
    const row = { id: ID, email: "a@b.c", displayName: "A", role: "admin", status: "active", createdAt: 0 };
    expect(runState(JSON.stringify({ id: "r", status: "running", output: null }))).toEqual({
      state: "running",
      status: "running",
    });
    expect(runState(JSON.stringify({ id: "r", status: "complete", output: { account: row } }))).toEqual({
      state: "complete",
      account: row,
    });
    expect(runState(JSON.stringify({ status: "complete", output: { account: null } }))).toEqual({
      state: "complete",
      account: null,
    });
    expect(runState(JSON.stringify({ status: "errored", error: { name: "Error", message: "boom" } }))).toEqual({
      state: "failed",
      status: "errored",
      error: "boom",
    });
    expect(describeAccount(row)).toBe(
      `${ID}: email=a@b.c displayName="A" role=admin status=active createdAt=1970-01-01T00:00:00.000Z`,
    );
  });
});

describe("npm run admin: a real run against the local dev server", () => {
  let server: LocalServer;
  beforeAll(async () => {
    server = await startServer({ ...E2E_VARS, ADMIN_EMAILS: "" });
  }, 180_000);
  afterAll(() => server?.stop());

  const api = async (method: string, route: string, token?: string, body?: unknown) => {
    const res = await fetch(`${server.baseUrl}${route}`, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as { data: any; code?: string } };
  };
  const admin = (...argv: string[]) =>
    run(process.execPath, ["scripts/admin.ts", ...argv, "--env", "local", "--port", String(server.port)], {
      cwd: ROOT,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  const auditOf = async (token: string, userId: string) =>
    (await api("GET", "/api/v1/admin/audit?limit=100", token)).json.data.items.filter(
      (item: { targetId: string }) => item.targetId === userId,
    );

  it("a grant by id makes an admin in its owner (the user's token works at once, audited as the operator's); a revoke unmakes it", {
    timeout: 300_000,
  }, async () => {
    const registered = await api("POST", "/api/v1/auth/register", undefined, {
      email: "o'brien@example.com",
      password: "correct horse battery",
      displayName: "O'Brien",
    });
    expect(registered.status).toBe(201);
    const { user, accessToken: token } = registered.json.data;
    expect((await api("GET", "/api/v1/admin/audit", token)).status).toBe(403);

    const shown = await admin("show", "--user-id", user.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(
      `local: ${user.id}: email=o'brien@example.com displayName="O'Brien" role=user status=active createdAt=${user.createdAt}`,
    );

    const granted = await admin("grant", "--user-id", user.id);
    expect(granted.code, granted.stderr).toBe(0);
    expect(granted.stdout).toContain(`${user.id}: email=o'brien@example.com`);
    expect(granted.stdout).toContain("role=admin");
    // The same token (its claim still says user): its owner says admin now.
    const [row, ...more] = await auditOf(token, user.id);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ actorId: "operator", action: "role_grant", targetId: user.id });
    expect(row.detail).toMatchObject({ role: "admin", previousRole: "user", via: "npm run admin" });
    expect(granted.stdout).toContain(`audited as run ${row.requestId}`);
    // D1's index followed the owner (the profile is read from it).
    expect((await api("GET", "/api/v1/users/me", token)).json.data.role).toBe("admin");

    // A grant to an admin changes nothing and records nothing.
    expect((await admin("grant", "--user-id", user.id)).code).toBe(0);
    expect(await auditOf(token, user.id)).toHaveLength(1);

    const revoked = await admin("revoke", "--user-id", user.id);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain("role=user");
    const refused = await api("GET", "/api/v1/admin/audit", token);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe("insufficient_permissions");

    const nobody = await admin("grant", "--user-id", "64d15f9e2e6c8f4d5a000000");
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain("No account with id 64d15f9e2e6c8f4d5a000000");
  });

  it("with no dev server on the port, it says so and exits 1", { timeout: 60_000 }, async () => {
    const { code, stderr } = await run(
      process.execPath,
      ["scripts/admin.ts", "show", "--env", "local", "--user-id", ID, "--port", "1"],
      { cwd: ROOT },
    ).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(code).toBe(1);
    expect(stderr).toContain("is the local dev server running on port 1?");
  });
});
