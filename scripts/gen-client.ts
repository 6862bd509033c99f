import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "../test/e2e/support/server.ts";
import { generateTypes } from "./openapi-gen/generate.ts";

/**
 * `npm run gen:client`: regenerates test/e2e/generated/api.d.ts and the client SDK's
 * client/src/generated/api.ts from the document a local server
 * serves (E2E_BASE_URL if one is running, else a fresh one started and stopped here).
 * `npm run test:e2e` compares the committed file with the same generation and fails when stale.
 */
export const GENERATED_TYPES = path.resolve(import.meta.dirname, "../test/e2e/generated/api.d.ts");
/** The client SDK's copy (client/src/generated/api.ts): the same text, inside the package it ships with. */
export const CLIENT_TYPES = path.resolve(import.meta.dirname, "../client/src/generated/api.ts");

export async function typesFrom(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/openapi.json`);
  if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`);
  return generateTypes(await res.json());
}

export async function checkTypesFresh(baseUrl: string): Promise<boolean> {
  const served = await typesFrom(baseUrl);
  return [GENERATED_TYPES, CLIENT_TYPES].map((file) => sameAsServed(file, served)).every(Boolean);
}

function sameAsServed(file: string, served: string): boolean {
  let committed = "";
  try {
    committed = readFileSync(file, "utf8");
  } catch {
    // missing counts as stale
  }
  if (committed === served) return true;
  // Point at the first difference so the author sees which operation or schema moved.
  const a = committed.split("\n");
  const b = served.split("\n");
  const at = a.findIndex((line, i) => line !== b[i]);
  const line = at === -1 ? a.length : at;
  console.error(
    `  ${path.relative(process.cwd(), file)}: first difference at line ${line + 1}:\n  committed: ${a[line] ?? "(end)"}\n  served:    ${b[line] ?? "(end)"}`,
  );
  return false;
}

async function main() {
  const running = process.env.E2E_BASE_URL;
  const server = running ? undefined : await startServer();
  try {
    const types = await typesFrom(running ?? server?.baseUrl ?? "");
    for (const file of [GENERATED_TYPES, CLIENT_TYPES]) {
      writeFileSync(file, types);
      console.log(`wrote ${path.relative(process.cwd(), file)} (${types.length} bytes)`);
    }
  } finally {
    await server?.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
