/**
 * Makes or unmakes an admin, out of band (API.md "Admins"): no account becomes an admin by
 * registering outside local development, so an operator runs
 *
 *   npm run admin -- grant  --env <local|dev|production> --email alice@example.com
 *   npm run admin -- revoke --env <local|dev|production> --email alice@example.com
 *
 * which sets `users.role` with one D1 statement through `wrangler d1 execute DB` (`--local` for
 * local, `--remote --env <env>` otherwise, so it needs `npx wrangler login` for dev/production).
 * The account must exist (register first). Admin routes read the role from D1 on every request,
 * so the change holds from the next request: no token has to be reissued. `--persist-to <dir>`
 * reaches a local database kept elsewhere (tests).
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ENVIRONMENTS = ["local", "dev", "production"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];
export type AdminCommand = { action: "grant" | "revoke"; env: Environment; email: string; persistTo: string | null };

export const USAGE = "usage: npm run admin -- <grant|revoke> --env <local|dev|production> --email <email> [--persist-to <dir>]";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The registration's rule, loosely: one @, no spaces or control characters, at most 254 characters. */
const EMAIL = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+$/u;

/** The command line after `npm run admin --`; throws UsageError for anything else. */
export function parseArgs(argv: readonly string[]): AdminCommand {
  const [action, ...rest] = argv;
  if (action !== "grant" && action !== "revoke") throw new UsageError(`the first argument must be grant or revoke\n${USAGE}`);
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i]!, rest[i + 1]];
    if (!["--env", "--email", "--persist-to"].includes(flag)) throw new UsageError(`unknown option ${flag}\n${USAGE}`);
    if (value === undefined || value.startsWith("--")) throw new UsageError(`${flag} needs a value\n${USAGE}`);
    if (options.has(flag)) throw new UsageError(`${flag} given twice\n${USAGE}`);
    options.set(flag, value);
  }
  const env = options.get("--env");
  if (!ENVIRONMENTS.includes(env as Environment))
    throw new UsageError(`--env must be one of ${ENVIRONMENTS.join(", ")}\n${USAGE}`);
  // Stored lower-cased (src/services/auth.ts), so looked up lower-cased.
  const email = options.get("--email")?.trim().toLowerCase() ?? "";
  if (email.length > 254 || !EMAIL.test(email)) throw new UsageError(`--email must be an email address\n${USAGE}`);
  const persistTo = options.get("--persist-to") ?? null;
  if (persistTo !== null && env !== "local") throw new UsageError(`--persist-to is for --env local only\n${USAGE}`);
  return { action, env: env as Environment, email, persistTo };
}

/** An SQLite string literal: `wrangler d1 execute --command` takes no bound parameters. */
export const sqlString = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** The one statement: the role, set by email, answering the row it changed (none: no such account). */
export function roleStatement(command: Pick<AdminCommand, "action" | "email">): string {
  const role = command.action === "grant" ? "admin" : "user";
  return `UPDATE users SET role = ${sqlString(role)} WHERE email = ${sqlString(command.email)} RETURNING id, email, role`;
}

/** wrangler's arguments: the local database, or the environment's remote one. */
export function wranglerArgs(command: AdminCommand): string[] {
  const target =
    command.env === "local"
      ? ["--local", ...(command.persistTo === null ? [] : ["--persist-to", command.persistTo])]
      : ["--remote", "--env", command.env];
  return ["d1", "execute", "DB", ...target, "--command", roleStatement(command), "--json"];
}

/** The rows the statement answered, from `wrangler d1 execute --json` output. */
export function changedRows(output: string): { id: string; email: string; role: string }[] {
  const parsed: unknown = JSON.parse(output);
  const results = Array.isArray(parsed) ? parsed : [parsed];
  return results.flatMap((result) => (result as { results?: { id: string; email: string; role: string }[] }).results ?? []);
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function main(argv: readonly string[]): number {
  let command: AdminCommand;
  try {
    command = parseArgs(argv);
  } catch (error) {
    console.error(error instanceof UsageError ? error.message : error);
    return 2;
  }
  const wrangler = spawnSync(path.join(ROOT, "node_modules/.bin/wrangler"), wranglerArgs(command), {
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
    console.error(`No account with email ${command.email} in ${command.env}: it must register first.`);
    return 1;
  }
  for (const row of rows) console.log(`${command.env}: ${row.email} (${row.id}) is now role=${row.role}`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
