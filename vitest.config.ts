import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { unstable_readConfig } from "wrangler";

/** test/deploy-safety.test.ts: each environment of wrangler.toml as wrangler itself resolves it (Workers cannot read files). */
function wranglerEnvironments() {
  return Object.fromEntries(
    (["local", "dev", "production"] as const).map((name) => {
      const config = unstable_readConfig({ config: "./wrangler.toml", env: name === "local" ? undefined : name });
      const { workers_dev: workersDev, routes = [], route = null, vars } = config;
      return [name, { name: config.name, workersDev, routes, route, vars }];
    }),
  );
}

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            TEST_WRANGLER_ENVIRONMENTS: wranglerEnvironments(),
            // Test-only: lets WalletDO.armFault stop a transfer after a protocol step. Deployed
            // Workers never have this binding (and the switch also requires ENVIRONMENT=local).
            TEST_FAULT_INJECTION: "on",
            // test/wallets/simulation.test.ts: more or specific seeds on demand (see that file).
            WALLET_SIM_SEED: process.env.WALLET_SIM_SEED ?? "",
            WALLET_SIM_RUNS: process.env.WALLET_SIM_RUNS ?? "",
            WALLET_SIM_OPS: process.env.WALLET_SIM_OPS ?? "",
            WALLET_SIM_SERIAL: process.env.WALLET_SIM_SERIAL ?? "",
          },
        },
      }),
    ],
    test: {
      include: ["test/**/*.test.ts"],
      exclude: ["test/e2e/**"],
      setupFiles: ["./test/apply-migrations.ts"],
      testTimeout: 30_000,
      hookTimeout: 60_000,
    },
  };
});
