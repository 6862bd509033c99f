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
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              // The product's entry plus TestWalletDO (fault switch, movable clock), bound as WALLET
              // here only: deployed Workers are built from src/index.ts and have neither.
              main: "./test/support/test-worker.ts",
              miniflare: {
                durableObjects: {
                  WALLET: { className: "TestWalletDO", useSQLite: true },
                  RATE_LIMITER: { className: "RateLimiterDO", useSQLite: true },
                  REALTIME: { className: "RealtimeDO", useSQLite: true },
                },
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  TEST_WRANGLER_ENVIRONMENTS: wranglerEnvironments(),
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
            name: "workers",
            include: ["test/**/*.test.ts"],
            exclude: ["test/e2e/**", "test/node/**"],
            setupFiles: ["./test/apply-migrations.ts"],
            testTimeout: 30_000,
            hookTimeout: 60_000,
          },
        },
        {
          // Judges that need Node (a linter and an SDK generator), run on the document a real
          // local server serves (test/node/*.test.ts).
          test: {
            name: "node",
            include: ["test/node/**/*.test.ts"],
            environment: "node",
            testTimeout: 120_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});
