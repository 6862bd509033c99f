import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";

/** README "Configuration": one row per var of wrangler.toml, with each environment's default as committed. */
const ROOT = path.resolve(import.meta.dirname, "../..");
const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");

function configurationRows(): Map<string, string[]> {
  const section = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## Environments and deploy"));
  const rows = new Map<string, string[]>();
  for (const line of section.split("\n").filter((l) => l.startsWith("| `"))) {
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((cell) => cell.trim());
    for (const [, name] of (cells[0] ?? "").matchAll(/`([A-Z0-9_]+)`/g)) rows.set(name as string, cells.slice(2));
  }
  return rows;
}

const varsOf = (env?: string) =>
  unstable_readConfig({ config: path.join(ROOT, "wrangler.toml"), env }).vars as Record<string, string>;

describe("README configuration table", () => {
  it("lists every var of every environment, and each numeric default as committed in local, dev and production", () => {
    const rows = configurationRows();
    const environments = [varsOf(), varsOf("dev"), varsOf("production")];
    for (const vars of environments) {
      for (const name of Object.keys(vars)) expect(rows.has(name), `README has no row for ${name}`).toBe(true);
    }
    for (const [name, value] of Object.entries(environments[0] ?? {})) {
      environments.forEach((vars, i) => {
        const committed = vars[name];
        if (committed !== undefined && /^\d+$/.test(committed))
          expect(rows.get(name)?.[i], `${name} column ${i}`).toBe(committed);
      });
      expect(value).toBeDefined();
    }
    expect(rows.get("RATE_LIMIT_REPLAYS_PER_MINUTE")).toEqual(["300", "300", "300"]);
    expect(rows.get("RATE_LIMIT_GROUP_ADDS_PER_MINUTE")).toEqual(["200", "200", "200"]);
  });
});
