import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
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
