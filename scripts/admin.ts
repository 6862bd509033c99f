/**
 * Makes or unmakes an admin, out of band (API.md "Admins"): no account becomes an admin by
 * registering outside local development, and registration never proves who owns an email, so an
 * operator names the account by its id, after checking who holds it:
 *
 *   npm run admin -- show   --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *   npm run admin -- grant  --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *   npm run admin -- revoke --env <local|dev|production> --user-id 64d15f9e2e6c8f4d5a123456
 *
 * The role is owned by the user's object (ARCHITECTURE.md §11), which only the deployment's
 * Worker can call, so the command does not write D1: it triggers the environment's
 * AdminCommandWorkflow (`wrangler workflows trigger`, src/workflows/admin-command-workflow.ts),
 * whose step asks the user's object, then reads the instance back (`wrangler workflows instances
 * describe --json`) until it ends (at most 60 s) and prints the account. `grant` / `revoke`: the
 * object changes the role and writes its audit row (`role_grant` / `role_revoke`, actor
 * `operator`, GET /api/v1/admin/audit) in one transaction; its outboxes then write D1's `users.role`
 * index and the audit log. A grant to an admin (or a revoke of a user) changes nothing and records
 * nothing. `show` prints the account (email, display name, creation time from the directory; role
 * and status from their owner) and changes nothing. Admin routes ask the owner on every request,
 * so the change holds from the next request.
 *
 * `--env local` talks to the local dev server (`npm run dev`), which must be running: on port 8787,
 * or `--port <n>`. `--env dev|production` reaches the deployed Workflow (needs `npx wrangler login`).
 */
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { userInfo } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ENVIRONMENTS = ["local", "dev", "production"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];
export type AdminAction = "grant" | "revoke" | "show";
/** `port`: the local dev server's (local only; null elsewhere). */
export type AdminCommand = { action: AdminAction; env: Environment; userId: string; port: number | null };

export const USAGE =
  "usage: npm run admin -- <show|grant|revoke> --env <local|dev|production> --user-id <24 hex id> [--port <local dev server port, default 8787>]";

/** wrangler dev's default port: where `npm run dev` serves. */
export const DEFAULT_LOCAL_PORT = 8787;

/** The AdminCommandWorkflow of each environment, as wrangler.toml names it (test/node/admin-script.test.ts checks). */
export const WORKFLOW_NAMES: Record<Environment, string> = {
  local: "credit-chat-local-admin-command",
  dev: "credit-chat-dev-admin-command",
  production: "credit-chat-admin-command",
};

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** An id of API.md §1: 24 lowercase hex characters. */
const USER_ID = /^[0-9a-f]{24}$/;
const FLAGS = ["--env", "--user-id", "--port"];

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
  const port = options.get("--port");
  if (port !== undefined && env !== "local") throw new UsageError(`--port is for --env local only\n${USAGE}`);
  if (port !== undefined && (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65_535))
    throw new UsageError(`--port must be a port number\n${USAGE}`);
  return { action, env: env as Environment, userId, port: env === "local" ? Number(port ?? DEFAULT_LOCAL_PORT) : null };
}

/** Who ran the command: the run's id (the Workflow instance's id and the audit row's request id) and the OS user. */
export type RunContext = { runId: string; operator: string };

export function newRunContext(): RunContext {
  let operator = "unknown";
  try {
    operator = userInfo().username || operator;
  } catch {
    // No passwd entry (some containers): the audit row says "unknown".
  }
  return { runId: randomUUID(), operator };
}

/** The Workflow instance's params (src/services/admin-command.ts checks them again). */
export const workflowParams = (command: AdminCommand, run: RunContext) => ({
  action: command.action,
  userId: command.userId,
  operator: run.operator,
  runId: run.runId,
});

/** Where wrangler finds the Workflow: the local dev server's port, or the environment's deployment. */
const target = (command: AdminCommand) =>
  command.env === "local" ? ["--local", "--port", String(command.port ?? DEFAULT_LOCAL_PORT)] : ["--env", command.env];

/** `wrangler workflows trigger`: one instance, its id the run's, so the script knows what to read back. */
export function triggerArgs(command: AdminCommand, run: RunContext): string[] {
  const params = JSON.stringify(workflowParams(command, run));
  return ["workflows", "trigger", WORKFLOW_NAMES[command.env], params, "--id", run.runId, ...target(command), "--json"];
}

export function describeArgs(command: AdminCommand, run: RunContext): string[] {
  return ["workflows", "instances", "describe", WORKFLOW_NAMES[command.env], run.runId, ...target(command), "--json"];
}

export type AccountRow = {
  id: string;
  email: string | null;
  displayName: string | null;
  role: string;
  status: string;
  createdAt: number | null;
};

/** What `instances describe --json` says of the run: still going, ended with the account (null: no such account), or failed. */
export type RunState =
  | { state: "running"; status: string }
  | { state: "complete"; account: AccountRow | null }
  | { state: "failed"; status: string; error: string };

export function runState(output: string): RunState {
  const instance = JSON.parse(output) as {
    status: string;
    output?: { account?: AccountRow | null } | null;
    error?: { name?: string; message?: string } | null;
  };
  if (instance.status === "complete") return { state: "complete", account: instance.output?.account ?? null };
  if (["errored", "terminated"].includes(instance.status)) {
    return { state: "failed", status: instance.status, error: instance.error?.message ?? "no error given" };
  }
  return { state: "running", status: instance.status };
}

/** One line per account, for the operator to check before (and after) changing it. */
export const describeAccount = (row: AccountRow) =>
  `${row.id}: email=${row.email} displayName=${JSON.stringify(row.displayName)} role=${row.role} status=${row.status} createdAt=${row.createdAt === null ? null : new Date(row.createdAt).toISOString()}`;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** How long the script follows its run before leaving it to `wrangler workflows instances describe`. */
const RUN_TIMEOUT_MS = 60_000;

function wrangler(args: string[]): { ok: boolean; stdout: string; stderr: string } {
  const result = spawnSync(path.join(ROOT, "node_modules/.bin/wrangler"), args, { cwd: ROOT, encoding: "utf8" });
  return { ok: result.status === 0, stdout: result.stdout, stderr: result.stderr };
}

/** Reads the run back until it ends or RUN_TIMEOUT_MS passes. */
async function follow(command: AdminCommand, run: RunContext): Promise<RunState> {
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  let last: RunState = { state: "running", status: "queued" };
  while (Date.now() < deadline) {
    const described = wrangler(describeArgs(command, run));
    if (described.ok) last = runState(described.stdout);
    if (last.state !== "running") return last;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return last;
}

async function main(argv: readonly string[]): Promise<number> {
  let command: AdminCommand;
  try {
    command = parseArgs(argv);
  } catch (error) {
    console.error(error instanceof UsageError ? error.message : error);
    return 2;
  }
  const run = newRunContext();
  const triggered = wrangler(triggerArgs(command, run));
  if (!triggered.ok) {
    const hint = command.env === "local" ? ` (is the local dev server running on port ${command.port}? npm run dev)` : "";
    console.error(`wrangler workflows trigger failed${hint}:\n${triggered.stderr}${triggered.stdout}`);
    return 1;
  }
  const ended = await follow(command, run);
  const instance = `wrangler ${describeArgs(command, run).join(" ")}`;
  if (ended.state === "running") {
    console.error(`Run ${run.runId} is still ${ended.status} after ${RUN_TIMEOUT_MS / 1000} s; follow it with: ${instance}`);
    return 1;
  }
  if (ended.state === "failed") {
    console.error(`Run ${run.runId} ${ended.status}: ${ended.error}\n(${instance})`);
    return 1;
  }
  if (ended.account === null) {
    console.error(`No account with id ${command.userId} in ${command.env}.`);
    return 1;
  }
  console.log(`${command.env}: ${describeAccount(ended.account)}`);
  if (command.action !== "show")
    console.log(
      `audited as run ${run.runId} (GET /api/v1/admin/audit, action role_${command.action}; a role it already had records nothing)`,
    );
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
