/**
 * Makes or unmakes an admin, out of band (API.md "Admins"): no account becomes an admin by
 * registering outside local development, and registration never proves who owns an email, so an
 * operator names the account by its id, after checking who holds it:
 *
 *   npm run admin -- show   --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *   npm run admin -- grant  --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *   npm run admin -- revoke --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *
 * `show` prints the account (email, display name, role, status, creation time) and changes
 * nothing. `grant` / `revoke` set `users.role` and write the change's audit row (`role_grant` /
 * `role_revoke`, actor `operator`, GET /api/v1/admin/audit) in ONE `wrangler d1 execute DB`
 * command: its statements run as one D1 batch, a transaction, so there is no role change without
 * its row and no row without the change. A grant to an admin (or a revoke of a user) changes
 * nothing and records nothing. `--local` for local, `--remote --env <env>` otherwise (needs
 * `npx wrangler login`). Admin routes read the role on every request, so the change holds from
 * the next request. `--persist-to <dir>` reaches a local database kept elsewhere (tests).
 */
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { userInfo } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ENVIRONMENTS = ["local", "dev", "production"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];
export type AdminAction = "grant" | "revoke" | "show";
export type AdminCommand = { action: AdminAction; env: Environment; userId: string; persistTo: string | null };

export const USAGE =
  "usage: npm run admin -- <show|grant|revoke> --env <local|dev|production> --user-id <24 hex id> [--persist-to <dir>]";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** An id of API.md §1: 24 lowercase hex characters. */
const USER_ID = /^[0-9a-f]{24}$/;
const FLAGS = ["--env", "--user-id", "--persist-to"];

/** The command line after `npm run admin --`; throws UsageError for anything else (`--email` included: ids only). */
export function parseArgs(argv: readonly string[]): AdminCommand {
  const [action, ...rest] = argv;
  if (action !== "grant" && action !== "revoke" && action !== "show") {
    throw new UsageError(`the first argument must be show, grant or revoke\n${USAGE}`);
  }
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i]!, rest[i + 1]];
    if (flag === "--email")
      throw new UsageError(`accounts are named by --user-id, never by email (see README, "Making admins")\n${USAGE}`);
    if (!FLAGS.includes(flag)) throw new UsageError(`unknown option ${flag}\n${USAGE}`);
    if (value === undefined || value.startsWith("--")) throw new UsageError(`${flag} needs a value\n${USAGE}`);
    if (options.has(flag)) throw new UsageError(`${flag} given twice\n${USAGE}`);
    options.set(flag, value);
  }
  const env = options.get("--env");
  if (!ENVIRONMENTS.includes(env as Environment))
    throw new UsageError(`--env must be one of ${ENVIRONMENTS.join(", ")}\n${USAGE}`);
  const userId = options.get("--user-id")?.trim() ?? "";
  if (!USER_ID.test(userId)) throw new UsageError(`--user-id must be a user id (24 lowercase hex characters)\n${USAGE}`);
  const persistTo = options.get("--persist-to") ?? null;
  if (persistTo !== null && env !== "local") throw new UsageError(`--persist-to is for --env local only\n${USAGE}`);
  return { action, env: env as Environment, userId, persistTo };
}

/** An SQLite string literal: `wrangler d1 execute --command` takes no bound parameters. */
export const sqlString = (value: string) => `'${value.replaceAll("'", "''")}'`;

const ACCOUNT_COLUMNS = "id, email, display_name AS displayName, role, status, created_at AS createdAt";

/** Who ran the command and when: the audit row's id (time-ordered like every id), run id and operator. */
export type RunContext = { auditId: string; runId: string; operator: string; now: number };

/** A fresh context: an id of API.md §1 (4 bytes of Unix seconds, 8 random), a UUID for the run, the OS user. */
export function newRunContext(now = Date.now()): RunContext {
  const seconds = Math.floor(now / 1000)
    .toString(16)
    .padStart(8, "0");
  let operator = "unknown";
  try {
    operator = userInfo().username || operator;
  } catch {
    // No passwd entry (some containers): the audit row says "unknown".
  }
  return { auditId: `${seconds}${randomBytes(8).toString("hex")}`, runId: randomUUID(), operator, now };
}

/**
 * The SQL of one run. `show`: a read. `grant` / `revoke`: the audit row, inserted only when the
 * role changes (it reads the role before the change), then the change answering the account; one
 * batch, so both or neither.
 */
export function statements(command: Pick<AdminCommand, "action" | "userId">, run: RunContext): string {
  const id = sqlString(command.userId);
  if (command.action === "show") return `SELECT ${ACCOUNT_COLUMNS} FROM users WHERE id = ${id}`;
  const role = sqlString(command.action === "grant" ? "admin" : "user");
  const detail = `json_object('role', ${role}, 'previousRole', role, 'operator', ${sqlString(run.operator)}, 'via', 'npm run admin')`;
  return [
    `INSERT INTO admin_audit (id, actor_id, action, target_id, detail, request_id, created_at) SELECT ${sqlString(run.auditId)}, 'operator', ${sqlString(`role_${command.action}`)}, id, ${detail}, ${sqlString(run.runId)}, ${run.now} FROM users WHERE id = ${id} AND role <> ${role}`,
    `UPDATE users SET role = ${role} WHERE id = ${id} RETURNING ${ACCOUNT_COLUMNS}`,
  ].join("; ");
}

/** wrangler's arguments: the local database, or the environment's remote one. */
export function wranglerArgs(command: AdminCommand, run: RunContext): string[] {
  const target =
    command.env === "local"
      ? ["--local", ...(command.persistTo === null ? [] : ["--persist-to", command.persistTo])]
      : ["--remote", "--env", command.env];
  return ["d1", "execute", "DB", ...target, "--command", statements(command, run), "--json"];
}

export type AccountRow = { id: string; email: string; displayName: string; role: string; status: string; createdAt: number };

/** The rows the statements answered (every statement's), from `wrangler d1 execute --json` output. */
export function changedRows<Row = AccountRow>(output: string): Row[] {
  const parsed: unknown = JSON.parse(output);
  const results = Array.isArray(parsed) ? parsed : [parsed];
  return results.flatMap((result) => (result as { results?: Row[] }).results ?? []);
}

/** One line per account, for the operator to check before (and after) changing it. */
export const describeAccount = (row: AccountRow) =>
  `${row.id}: email=${row.email} displayName=${JSON.stringify(row.displayName)} role=${row.role} status=${row.status} createdAt=${new Date(row.createdAt).toISOString()}`;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function main(argv: readonly string[]): number {
  let command: AdminCommand;
  try {
    command = parseArgs(argv);
  } catch (error) {
    console.error(error instanceof UsageError ? error.message : error);
    return 2;
  }
  const run = newRunContext();
  const wrangler = spawnSync(path.join(ROOT, "node_modules/.bin/wrangler"), wranglerArgs(command, run), {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["inherit", "pipe", "inherit"],
  });
  if (wrangler.status !== 0) {
    console.error(`wrangler d1 execute failed (exit ${wrangler.status ?? wrangler.signal}):\n${wrangler.stdout}`);
    return 1;
  }
  const rows = changedRows(wrangler.stdout);
  if (rows.length === 0) {
    console.error(`No account with id ${command.userId} in ${command.env}.`);
    return 1;
  }
  for (const row of rows) console.log(`${command.env}: ${describeAccount(row)}`);
  if (command.action !== "show")
    console.log(`audited as run ${run.runId} (GET /api/v1/admin/audit, action role_${command.action})`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
