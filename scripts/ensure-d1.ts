import { spawnSync } from "node:child_process";
import path from "node:path";
import { unstable_readConfig } from "wrangler";

/**
 * `node scripts/ensure-d1.ts --env <dev|production>`: the first step of `npm run deploy:<env>`.
 * Makes sure each D1 database the environment binds exists, creating the missing ones under the
 * `database_name` wrangler.toml gives them.
 *
 * Why: the deployed environments name their databases and omit `database_id`, which wrangler
 * (4.156) supports: `wrangler deploy` provisions a database it does not find by name, and every
 * `wrangler d1` command finds it by name, so no id is ever copied into wrangler.toml. But that
 * provisioning happens inside `wrangler deploy`, and a deploy must migrate its database first (new
 * code may read a new column): on a fresh account the migration step would find no database. So
 * this creates it first, the same by-name database the provisioning would have created; on every
 * later deploy it finds it and does nothing.
 */
const DEPLOYED_ENVIRONMENTS = ["dev", "production"] as const;
const ROOT = path.resolve(import.meta.dirname, "..");

function environmentArg(argv: readonly string[]): (typeof DEPLOYED_ENVIRONMENTS)[number] {
  const at = argv.indexOf("--env");
  const name = at >= 0 ? argv[at + 1] : undefined;
  const known = DEPLOYED_ENVIRONMENTS.find((environment) => environment === name);
  if (!known) throw new Error(`usage: node scripts/ensure-d1.ts --env <${DEPLOYED_ENVIRONMENTS.join("|")}>`);
  return known;
}

/** Runs the project's wrangler (npm scripts put node_modules/.bin first on PATH); throws on failure. */
function wrangler(args: string[], capture: boolean): string {
  const result = spawnSync("wrangler", args, {
    cwd: ROOT,
    encoding: "utf8",
    stdio: capture ? ["inherit", "pipe", "inherit"] : "inherit",
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`wrangler ${args.join(" ")} exited with ${result.status}`);
  return result.stdout ?? "";
}

function main() {
  const environment = environmentArg(process.argv.slice(2));
  const config = unstable_readConfig({ config: path.join(ROOT, "wrangler.toml"), env: environment });
  const databases: { binding: string; database_name?: string; database_id?: string }[] = config.d1_databases;
  const unpinned = databases.filter((database) => !database.database_id);
  if (unpinned.length === 0) return;
  const existing = new Set(
    (JSON.parse(wrangler(["d1", "list", "--json", "--env", environment], true)) as { name: string }[]).map((db) => db.name),
  );
  for (const database of unpinned) {
    const name = database.database_name;
    if (!name) throw new Error(`[env.${environment}] D1 binding ${database.binding} has neither database_name nor database_id`);
    if (existing.has(name)) {
      console.log(`D1 database ${name} exists (${environment}).`);
      continue;
    }
    console.log(`Creating D1 database ${name} for ${environment} (first deploy)…`);
    wrangler(["d1", "create", name, "--env", environment], false);
  }
}

main();
