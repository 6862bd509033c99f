import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { changedRows, parseArgs, roleStatement, sqlString, UsageError, wranglerArgs } from "../../scripts/admin.ts";

/** `npm run admin` (scripts/admin.ts): how it reads its arguments, the SQL it sends, and a real run on a local D1. */
const ROOT = path.resolve(import.meta.dirname, "../..");
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
const run = promisify(execFile);

describe("npm run admin: arguments", () => {
  it("reads grant/revoke, the environment and the email (lower-cased)", () => {
    expect(parseArgs(["grant", "--env", "production", "--email", " Alice@Example.com "])).toEqual({
      action: "grant",
      env: "production",
      email: "alice@example.com",
      persistTo: null,
    });
    expect(parseArgs(["revoke", "--email", "bob@example.com", "--env", "local", "--persist-to", "/tmp/x"])).toEqual({
      action: "revoke",
      env: "local",
      email: "bob@example.com",
      persistTo: "/tmp/x",
    });
  });

  it("refuses anything else with its usage", () => {
    const bad = [
      [],
      ["promote", "--env", "local", "--email", "a@b.c"],
      ["grant", "--email", "a@b.c"],
      ["grant", "--env", "staging", "--email", "a@b.c"],
      ["grant", "--env", "local"],
      ["grant", "--env", "local", "--email", "not-an-email"],
      ["grant", "--env", "local", "--email", "a b@c.d"],
      ["grant", "--env", "local", "--email"],
      ["grant", "--env", "local", "--email", "--env"],
      ["grant", "--env", "local", "--env", "dev", "--email", "a@b.c"],
      ["grant", "--env", "local", "--email", "a@b.c", "--remote", "yes"],
      ["grant", "--env", "production", "--email", "a@b.c", "--persist-to", "/tmp/x"],
      ["grant", "--env", "local", "--email", `${"a".repeat(250)}@b.cd`],
    ];
    for (const argv of bad) expect(() => parseArgs(argv), argv.join(" ")).toThrow(UsageError);
  });
});

describe("npm run admin: the statement and the wrangler call", () => {
  it("sets the role by email in one UPDATE that answers the changed row; quotes cannot escape the literal", () => {
    expect(roleStatement({ action: "grant", email: "alice@example.com" })).toBe(
      "UPDATE users SET role = 'admin' WHERE email = 'alice@example.com' RETURNING id, email, role",
    );
    expect(roleStatement({ action: "revoke", email: "alice@example.com" })).toBe(
      "UPDATE users SET role = 'user' WHERE email = 'alice@example.com' RETURNING id, email, role",
    );
    expect(sqlString("o'brien@example.com")).toBe("'o''brien@example.com'");
    expect(sqlString("x'; DROP TABLE users; --")).toBe("'x''; DROP TABLE users; --'");
  });

  it("targets the local database, or the environment's remote one", () => {
    const command = (env: "local" | "dev" | "production", persistTo: string | null = null) =>
      wranglerArgs({ action: "grant", env, email: "a@b.c", persistTo });
    const statement = roleStatement({ action: "grant", email: "a@b.c" });
    expect(command("local")).toEqual(["d1", "execute", "DB", "--local", "--command", statement, "--json"]);
    expect(command("local", "/tmp/db")).toEqual([
      "d1",
      "execute",
      "DB",
      "--local",
      "--persist-to",
      "/tmp/db",
      "--command",
      statement,
      "--json",
    ]);
    expect(command("dev")).toEqual(["d1", "execute", "DB", "--remote", "--env", "dev", "--command", statement, "--json"]);
    expect(command("production")).toEqual([
      "d1",
      "execute",
      "DB",
      "--remote",
      "--env",
      "production",
      "--command",
      statement,
      "--json",
    ]);
  });

  it("reads the changed rows from wrangler's JSON", () => {
    const row = { id: "64d15f9e2e6c8f4d5a123456", email: "a@b.c", role: "admin" };
    expect(changedRows(JSON.stringify([{ results: [row], success: true, meta: {} }]))).toEqual([row]);
    expect(changedRows(JSON.stringify([{ results: [], success: true, meta: {} }]))).toEqual([]);
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
    return changedRows(stdout);
  };
  const admin = (...argv: string[]) =>
    run(process.execPath, ["scripts/admin.ts", ...argv, "--env", "local", "--persist-to", persistTo], { cwd: ROOT }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );

  it("grants and revokes the role of an existing account, and says so when there is none", { timeout: 300_000 }, async () => {
    await run(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], { cwd: ROOT });
    await d1(
      "INSERT INTO users (id, email, display_name, display_name_key, password_hash, role, status, created_at) VALUES ('64d15f9e2e6c8f4d5a123456', 'o''brien@example.com', 'O', 'o', 'x', 'user', 'active', 1)",
    );
    const granted = await admin("grant", "--email", "O'Brien@Example.com");
    expect(granted.code, granted.stderr).toBe(0);
    expect(granted.stdout).toContain("o'brien@example.com (64d15f9e2e6c8f4d5a123456) is now role=admin");
    expect(await d1("SELECT role FROM users")).toEqual([{ role: "admin" }]);
    const revoked = await admin("revoke", "--email", "o'brien@example.com");
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await d1("SELECT role FROM users")).toEqual([{ role: "user" }]);
    const nobody = await admin("grant", "--email", "nobody@example.com");
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain("No account with email nobody@example.com");
  });
});
