import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { createConfig, lintFromString } from "@redocly/openapi-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSdk } from "../../scripts/openapi-gen/sdk.ts";
import { type LocalServer, startServer } from "../e2e/support/server.ts";

/**
 * Tools nobody on the project wrote, run on the document a real local server serves:
 * Redocly's `recommended` ruleset, and @hey-api/openapi-ts generating a second client that
 * `tsc --strict` must compile, its functions named from the operationIds.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const TSC = path.join(ROOT, "node_modules/.bin/tsc");

type Document = { paths: Record<string, Record<string, { operationId?: string }>> };

let server: LocalServer | undefined;
let doc: Document;
let source: string;

beforeAll(async () => {
  server = await startServer();
  const res = await fetch(`${server.baseUrl}/openapi.json`);
  expect(res.status).toBe(200);
  source = await res.text();
  doc = JSON.parse(source) as Document;
});

afterAll(async () => {
  await server?.stop();
});

/** The README's table of accepted warnings: `rule` and JSON pointer, each with its reason. */
function acceptedWarnings(readme: string): Set<string> {
  const start = readme.indexOf("<!-- openapi-lint-exceptions:start -->");
  const end = readme.indexOf("<!-- openapi-lint-exceptions:end -->");
  if (start === -1 || end === -1) throw new Error("README.md has no openapi-lint-exceptions table");
  const rows = readme
    .slice(start, end)
    .split("\n")
    .filter((line) => line.startsWith("| `"));
  return new Set(
    rows.map((row) => {
      const [rule, pointer, reason] = row
        .split("|")
        .slice(1, 4)
        .map((cell) => cell.trim().replaceAll("`", ""));
      if (!reason) throw new Error(`README exception without a reason: ${row}`);
      return `${rule} ${pointer}`;
    }),
  );
}

describe("the served OpenAPI document, judged by independent tools", () => {
  it("passes Redocly's recommended ruleset: no errors, and only the warnings the README lists with a reason", async () => {
    const config = await createConfig({ extends: ["recommended"] });
    const problems = await lintFromString({ source, absoluteRef: `${server?.baseUrl}/openapi.json`, config });
    const describe = (p: (typeof problems)[number]) => `${p.ruleId} ${p.location[0]?.pointer ?? ""}`;
    const errors = problems.filter((p) => p.severity === "error").map((p) => `${describe(p)}: ${p.message}`);
    expect(errors).toEqual([]);
    const warnings = new Set(problems.filter((p) => p.severity === "warn").map(describe));
    const accepted = acceptedWarnings(readFileSync(path.join(ROOT, "README.md"), "utf8"));
    expect(
      [...warnings].filter((w) => !accepted.has(w)),
      "warnings the README does not list",
    ).toEqual([]);
    // The list stays true: an exception nothing triggers any more is removed from the README.
    expect(
      [...accepted].filter((w) => !warnings.has(w)),
      "README exceptions no longer raised",
    ).toEqual([]);
  });

  it("the lint is not vacuous: an operation without an operationId is reported", async () => {
    const broken = JSON.parse(source) as Document & { paths: Record<string, Record<string, Record<string, unknown>>> };
    const operation = broken.paths["/api/v1/wallets/me"]?.get as Record<string, unknown>;
    delete operation.operationId;
    const config = await createConfig({ extends: ["recommended"] });
    const problems = await lintFromString({ source: JSON.stringify(broken), absoluteRef: "broken.json", config });
    expect(problems.map((p) => p.ruleId)).toContain("operation-operationId");
  });

  it("@hey-api/openapi-ts generates a client whose functions are the operationIds and that compiles with tsc --strict", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "credit-chat-sdk-"));
    try {
      await generateSdk(JSON.parse(source), dir);
      const sdk = readFileSync(path.join(dir, "sdk.gen.ts"), "utf8");
      const functions = [...sdk.matchAll(/^export const (\w+) = /gm)].map((m) => m[1]);
      const operationIds = Object.values(doc.paths).flatMap((methods) => Object.values(methods).map((op) => op.operationId));
      expect(operationIds.length).toBeGreaterThan(30);
      expect(functions.sort()).toEqual([...operationIds].sort());
      // A caller of the generated SDK, so the request and response types are exercised, not only declared.
      writeFileSync(
        path.join(dir, "usage.ts"),
        [
          'import { getMyWallet, registerUser, sendCreditTransfer } from "./sdk.gen";',
          "export async function registerThenPay(recipientId: string): Promise<number> {",
          '  const registered = await registerUser({ body: { email: "zoe@example.com", password: "correct horse battery", displayName: "Zoë 🚀" } });',
          "  const token: string | undefined = registered.data?.data.accessToken;",
          "  const headers = { Authorization: `Bearer ${token}` };",
          '  const sent = await sendCreditTransfer({ body: { recipientId, amount: 25, note: "lunch" }, headers: { ...headers, "Idempotency-Key": "k-1" } });',
          "  const wallet = await getMyWallet({ headers });",
          "  return (sent.data?.data.senderBalance ?? 0) + (wallet.data?.data.balance ?? 0);",
          "}",
        ].join("\n"),
      );
      const { stdout } = await promisify(execFile)(TSC, [
        "--ignoreConfig",
        "--strict",
        "--noEmit",
        "--target",
        "es2022",
        "--module",
        "esnext",
        "--moduleResolution",
        "bundler",
        "--lib",
        "es2023,dom",
        path.join(dir, "index.ts"),
        path.join(dir, "usage.ts"),
      ]).catch((error: { stdout?: string }) => {
        throw new Error(`tsc --strict failed on the generated client:\n${error.stdout ?? error}`);
      });
      expect(stdout).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
