import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer } from "../test/e2e/support/server.ts";
import { checkTypesFresh, GENERATED_TYPES } from "./gen-client.ts";

/**
 * `npm run test:e2e`: the real local server (wrangler dev, fresh migrated state, free port), then
 * 1. the generated client types must equal what the served document generates (else stale),
 * 2. the HTTP suite test/e2e/*.test.ts (node:test, files one after another: they share the server),
 * 3. the playground in headless Chromium (test/e2e/browser.ts; `--no-browser` skips it locally),
 * and the server is stopped by its own process group whatever happened.
 * Extra arguments that end in .test.ts run only those files.
 */
const ROOT = path.resolve(import.meta.dirname, "..");
const E2E_DIR = path.join(ROOT, "test/e2e");

const args = process.argv.slice(2);
const withBrowser = !args.includes("--no-browser");
const only = args.filter((arg) => arg.endsWith(".test.ts"));
const files = only.length
  ? only.map((file) => path.resolve(file))
  : readdirSync(E2E_DIR)
      .filter((name) => name.endsWith(".test.ts"))
      .sort()
      .map((name) => path.join(E2E_DIR, name));

function runNode(nodeArgs: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, { cwd: ROOT, env, stdio: "inherit" });
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** Which documented operations the suite answered at least once (informative, not a gate). */
async function reportCoverage(baseUrl: string, dir: string) {
  const doc = (await (await fetch(`${baseUrl}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
  const seen = new Set<string>();
  for (const file of readdirSync(dir)) {
    for (const key of Object.keys(JSON.parse(readFileSync(path.join(dir, file), "utf8")) as object)) {
      seen.add(key.split(" ").slice(0, 2).join(" "));
    }
  }
  const operations = Object.entries(doc.paths).flatMap(([template, methods]) =>
    Object.keys(methods).map((method) => `${method.toUpperCase()} ${template}`),
  );
  const missing = operations.filter((operation) => !seen.has(operation));
  console.log(`e2e: ${operations.length - missing.length}/${operations.length} documented operations exercised over HTTP`);
  if (missing.length) console.log(`e2e: not exercised: ${missing.join(", ")}`);
}

async function main(): Promise<number> {
  const started = Date.now();
  console.log("e2e: starting wrangler dev on a fresh migrated state …");
  const server = await startServer();
  const stopOnSignal = (signal: NodeJS.Signals) => {
    console.error(`e2e: ${signal}, stopping the server`);
    void server.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", stopOnSignal);
  process.once("SIGTERM", stopOnSignal);

  const failures: string[] = [];
  try {
    console.log(`e2e: server ready at ${server.baseUrl} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // The server's local D1, for the suite's operator step (`npm run admin -- … --persist-to`).
    const env = { ...process.env, E2E_BASE_URL: server.baseUrl };

    if (await checkTypesFresh(server.baseUrl)) {
      console.log(`e2e: ${path.relative(ROOT, GENERATED_TYPES)} matches the served /openapi.json`);
    } else {
      failures.push("generated client types are stale");
      console.error(
        `e2e: FAIL ${path.relative(ROOT, GENERATED_TYPES)} is stale vs the served /openapi.json: run \`npm run gen:client\` and commit it`,
      );
    }

    const coverageDir = mkdtempSync(path.join(tmpdir(), "credit-chat-e2e-coverage-"));
    // The timeout bounds each file as a whole too: 06-sessions-realtime.test.ts waits for six socket
    // teardowns of ~10 s each by design (54 s of the old 60 before every request also counted
    // against the budgets' local rate-limit objects, which costs it about a second per test).
    const suite = await runNode(["--test", "--test-concurrency=1", "--test-timeout=120000", "--test-reporter=spec", ...files], {
      ...env,
      E2E_COVERAGE_DIR: coverageDir,
    });
    if (suite !== 0) failures.push("HTTP suite");
    await reportCoverage(server.baseUrl, coverageDir);
    rmSync(coverageDir, { recursive: true, force: true });

    if (withBrowser) {
      const browser = await runNode([path.join(E2E_DIR, "browser.ts")], env);
      if (browser !== 0) failures.push("browser playground test");
    }
  } catch (error) {
    failures.push(String(error));
    console.error(error);
  } finally {
    await server.stop();
    console.log("e2e: server stopped");
  }
  console.log(failures.length ? `e2e: FAILED (${failures.join("; ")})` : "e2e: all passed");
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
