import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import {
  changedRows,
  describeAccount,
  newRunContext,
  parseArgs,
  type RunContext,
  sqlString,
  statements,
  UsageError,
  wranglerArgs,
} from "../../scripts/admin.ts";

/** `npm run admin` (scripts/admin.ts): how it reads its arguments, the SQL it sends, and a real run on a local D1. */
const ROOT = path.resolve(import.meta.dirname, "../..");
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
const run = promisify(execFile);
const ID = "64d15f9e2e6c8f4d5a123456";
const RUN: RunContext = { auditId: "64d15f9e0000000000000001", runId: "run-1", operator: "ops", now: 1_700_000_000_000 };

describe("npm run admin: arguments", () => {
  it("reads show/grant/revoke, the environment and the user id", () => {
    expect(parseArgs(["grant", "--env", "production", "--user-id", ` ${ID} `])).toEqual({
      action: "grant",
      env: "production",
      userId: ID,
      persistTo: null,
    });
    expect(parseArgs(["revoke", "--user-id", ID, "--env", "local", "--persist-to", "/tmp/x"])).toEqual({
      action: "revoke",
      env: "local",
      userId: ID,
      persistTo: "/tmp/x",
    });
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
      ["grant", "--env", "production", "--user-id", ID, "--persist-to", "/tmp/x"],
    ];
    for (const argv of bad) expect(() => parseArgs(argv), argv.join(" ")).toThrow(UsageError);
    expect(() => parseArgs(["grant", "--env", "local", "--email", "a@b.c"])).toThrow(/--user-id, never by email/);
  });
});

describe("npm run admin: the statements and the wrangler call", () => {
  it("writes the audit row (only on a real change) and the role in one command; show only reads", () => {
    expect(statements({ action: "grant", userId: ID }, RUN)).toBe(
      [
        `INSERT INTO admin_audit (id, actor_id, action, target_id, detail, request_id, created_at) SELECT '64d15f9e0000000000000001', 'operator', 'role_grant', id, json_object('role', 'admin', 'previousRole', role, 'operator', 'ops', 'via', 'npm run admin'), 'run-1', 1700000000000 FROM users WHERE id = '${ID}' AND role <> 'admin'`,
        `UPDATE users SET role = 'admin' WHERE id = '${ID}' RETURNING id, email, display_name AS displayName, role, status, created_at AS createdAt`,
      ].join("; "),
    );
    expect(statements({ action: "revoke", userId: ID }, RUN)).toContain("'role_revoke'");
    expect(statements({ action: "revoke", userId: ID }, RUN)).toContain("UPDATE users SET role = 'user'");
    expect(statements({ action: "show", userId: ID }, RUN)).toBe(
      `SELECT id, email, display_name AS displayName, role, status, created_at AS createdAt FROM users WHERE id = '${ID}'`,
    );
    expect(sqlString("o'brien")).toBe("'o''brien'");
    expect(statements({ action: "grant", userId: ID }, { ...RUN, operator: "x'; DROP TABLE users; --" })).toContain(
      "'x''; DROP TABLE users; --'",
    );
  });

  it("a run's audit id is an id of API.md (time-ordered, 24 hex) and its run id a UUID", () => {
    const context = newRunContext(1_700_000_000_000);
    expect(context.auditId).toMatch(/^6553f100[0-9a-f]{16}$/);
    expect(context.runId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("targets the local database, or the environment's remote one", () => {
    const command = (env: "local" | "dev" | "production", persistTo: string | null = null) =>
      wranglerArgs({ action: "grant", env, userId: ID, persistTo }, RUN);
    const sql = statements({ action: "grant", userId: ID }, RUN);
    expect(command("local")).toEqual(["d1", "execute", "DB", "--local", "--command", sql, "--json"]);
    expect(command("local", "/tmp/db")).toEqual([
      "d1",
      "execute",
      "DB",
      "--local",
      "--persist-to",
      "/tmp/db",
      "--command",
      sql,
      "--json",
    ]);
    expect(command("dev")).toEqual(["d1", "execute", "DB", "--remote", "--env", "dev", "--command", sql, "--json"]);
    expect(command("production")).toEqual(["d1", "execute", "DB", "--remote", "--env", "production", "--command", sql, "--json"]);
  });

  it("reads the rows from wrangler's JSON (every statement's) and describes the account", () => {
    const row = { id: ID, email: "a@b.c", displayName: "A", role: "admin", status: "active", createdAt: 0 };
    expect(
      changedRows(
        JSON.stringify([
          { results: [], success: true },
          { results: [row], success: true },
        ]),
      ),
    ).toEqual([row]);
    expect(changedRows(JSON.stringify([{ results: [], success: true, meta: {} }]))).toEqual([]);
    expect(describeAccount(row)).toBe(
      `${ID}: email=a@b.c displayName="A" role=admin status=active createdAt=1970-01-01T00:00:00.000Z`,
    );
  });
});

describe("npm run admin: a real run against a local D1", () => {
  const persistTo = mkdtempSync(path.join(tmpdir(), "credit-chat-admin-"));
  afterAll(() => rmSync(persistTo, { recursive: true, force: true }));
  const d1 = async (sql: string) => {
    const { stdout } = await run(
      WRANGLER,
      ["d1", "execute", "DB", "--local", "--persist-to", persistTo, "--command", sql, "--json"],
      {
        cwd: ROOT,
      },
    );
    return changedRows<Record<string, unknown>>(stdout);
  };
  const admin = (...argv: string[]) =>
    run(process.execPath, ["scripts/admin.ts", ...argv, "--env", "local", "--persist-to", persistTo], { cwd: ROOT }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );

  it("a promotion by id writes its audit row, in the same batch as the role; show names the holder first", {
    timeout: 300_000,
  }, async () => {
    await run(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], { cwd: ROOT });
    await d1(
      `INSERT INTO users (id, email, display_name, display_name_key, password_hash, role, status, created_at) VALUES ('${ID}', 'o''brien@example.com', 'O''Brien', 'o''brien', 'x', 'user', 'active', 1700000000000)`,
    );
    const shown = await admin("show", "--user-id", ID);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(
      `${ID}: email=o'brien@example.com displayName="O'Brien" role=user status=active createdAt=2023-11-14T22:13:20.000Z`,
    );
    expect(await d1("SELECT count(*) AS n FROM admin_audit")).toEqual([{ n: 0 }]);

    const granted = await admin("grant", "--user-id", ID);
    expect(granted.code, granted.stderr).toBe(0);
    expect(granted.stdout).toContain(`${ID}: email=o'brien@example.com`);
    expect(granted.stdout).toContain("role=admin");
    expect(await d1("SELECT role FROM users")).toEqual([{ role: "admin" }]);
    const [row] = await d1("SELECT actor_id, action, target_id, detail, request_id FROM admin_audit");
    expect(row).toMatchObject({ actor_id: "operator", action: "role_grant", target_id: ID });
    expect(JSON.parse(String(row?.detail))).toMatchObject({ role: "admin", previousRole: "user", via: "npm run admin" });
    expect(granted.stdout).toContain(`audited as run ${row?.request_id}`);

    // A grant to an admin changes nothing and records nothing; a revoke is recorded too.
    expect((await admin("grant", "--user-id", ID)).code).toBe(0);
    expect(await d1("SELECT count(*) AS n FROM admin_audit")).toEqual([{ n: 1 }]);
    expect((await admin("revoke", "--user-id", ID)).code).toBe(0);
    expect(await d1("SELECT role FROM users")).toEqual([{ role: "user" }]);
    expect(await d1("SELECT action FROM admin_audit ORDER BY created_at, id")).toEqual([
      { action: "role_grant" },
      { action: "role_revoke" },
    ]);

    // The batch is one transaction: when the role change fails, the audit row is not kept either.
    await d1("CREATE TRIGGER refuse_role BEFORE UPDATE OF role ON users BEGIN SELECT RAISE(ABORT, 'role change refused'); END");
    const refused = await admin("grant", "--user-id", ID);
    expect(refused.code).toBe(1);
    expect(await d1("SELECT count(*) AS n FROM admin_audit")).toEqual([{ n: 2 }]);
    await d1("DROP TRIGGER refuse_role");

    const nobody = await admin("grant", "--user-id", "64d15f9e2e6c8f4d5a000000");
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain("No account with id 64d15f9e2e6c8f4d5a000000");
    expect(await d1("SELECT count(*) AS n FROM admin_audit")).toEqual([{ n: 2 }]);
  });
});
