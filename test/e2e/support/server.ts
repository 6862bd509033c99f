import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * The real local server for the e2e suite: `wrangler dev` on a free port over a fresh, migrated
 * persist directory. It runs in its own process group so that stopping it (by its own pid, never
 * by name) also ends the workerd children it spawned.
 */
const ROOT = path.resolve(import.meta.dirname, "../../..");
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");

/** Vars that keep the suite's own traffic under the limiters; the failed sign-in limit per email
 * and address stays at its default (10/min) because the suite's 429 case is made against it, and
 * the per-user transfer limit is low enough (20/min, far above any one user's traffic in the suite)
 * for the replay story that runs past it. The request budgets stay on, at wrangler.toml's local
 * limits (a binding's limit is not a var): the suite's traffic is far under them, and
 * 07-budgets.test.ts loops one user past its budget. The suite's admin is named here so it does
 * not depend on what wrangler.toml lists. */
export const E2E_VARS: Record<string, string> = {
  ADMIN_EMAILS: "admin@example.com",
  SIGNUP_CREDITS: "100",
  RATE_LIMIT_BUDGETS: "on",
  RATE_LIMIT_LOGIN_PER_MINUTE: "10",
  RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: "50",
  RATE_LIMIT_AUTH_IP_PER_MINUTE: "100000",
  RATE_LIMIT_MESSAGES_PER_MINUTE: "100000",
  RATE_LIMIT_TRANSFERS_PER_MINUTE: "20",
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(WRANGLER, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`wrangler ${args.join(" ")} exited ${code}\n${output}`)),
    );
  });
}

export type LocalServer = { baseUrl: string; port: number; persistDir: string; stop(): Promise<void>; log(): string };

const childEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  // wrangler's shebang says `node`: make that the pinned Node 22 running us, not the system's 20.
  PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`,
  CI: "1",
  WRANGLER_SEND_METRICS: "false",
  NO_COLOR: "1",
  FORCE_COLOR: "0",
});

export async function startServer(vars: Record<string, string> = E2E_VARS): Promise<LocalServer> {
  const persistDir = await migratedPersistDir();
  const served = await serveOn(persistDir, vars).catch((error) => {
    rmSync(persistDir, { recursive: true, force: true });
    throw error;
  });
  return {
    ...served,
    stop: async () => {
      await served.stop();
      rmSync(persistDir, { recursive: true, force: true });
    },
  };
}

/** A fresh persist directory with the D1 migrations applied (the caller removes it). */
export async function migratedPersistDir(prefix = "credit-chat-e2e-"): Promise<string> {
  const persistDir = mkdtempSync(path.join(tmpdir(), prefix));
  try {
    await run(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistDir], childEnv());
  } catch (error) {
    rmSync(persistDir, { recursive: true, force: true });
    throw error;
  }
  return persistDir;
}

/**
 * `wrangler dev` over an EXISTING persist directory (so a server can be restarted on the state a
 * killed one left), on a fresh free port. `stop` ends it gracefully and keeps the directory;
 * `crash` SIGKILLs its whole process group at once, as a power cut would (scripts/crash-storm.ts).
 */
export async function serveOn(
  persistDir: string,
  vars: Record<string, string>,
): Promise<LocalServer & { crash(): Promise<void> }> {
  const env = childEnv();
  const port = await freePort();
  const inspectorPort = await freePort();
  const varArgs = Object.entries(vars).flatMap(([key, value]) => ["--var", `${key}:${value}`]);
  const child = spawn(
    WRANGLER,
    [
      "dev",
      "--port",
      String(port),
      "--ip",
      "127.0.0.1",
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      persistDir,
      "--show-interactive-dev-session=false",
      ...varArgs,
    ],
    { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout?.on("data", (chunk) => (log += chunk));
  child.stderr?.on("data", (chunk) => (log += chunk));

  const baseUrl = `http://127.0.0.1:${port}`;
  const server = {
    baseUrl,
    port,
    persistDir,
    log: () => log,
    stop: () => killGroup(child),
    crash: () => crashGroup(child),
  };
  try {
    await waitForHealth(baseUrl, child, () => log);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

async function waitForHealth(baseUrl: string, child: ChildProcess, log: () => string) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited ${child.exitCode} before serving\n${log()}`);
    try {
      const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not answer /health within 90 s\n${log()}`);
}

/** SIGTERM to the server's process group, SIGKILL if it is still there after 5 s. */
export async function killGroup(child: ChildProcess) {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-pid, name);
    } catch {
      // the group is already gone
    }
  };
  signal("SIGTERM");
  const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 5_000).unref());
  if ((await Promise.race([exited, timer])) === "timeout") signal("SIGKILL");
  // Whatever the leader did, no straggler of the group may outlive us.
  signal("SIGKILL");
}

/** SIGKILL to the server's whole process group at once (no graceful shutdown), then wait for the leader to go. */
export async function crashGroup(child: ChildProcess) {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // the group is already gone
  }
  await exited;
}
