import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
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
            // test/scale (npm run test:scale): other sizes on demand.
            SCALE_WALLETS: process.env.SCALE_WALLETS ?? "",
            SCALE_TRANSFERS: process.env.SCALE_TRANSFERS ?? "",
          },
        },
      }),
    ],
    test: {
      include: ["test/**/*.test.ts"],
      // test/scale: its own script (`npm run test:scale`), minutes long.
      exclude: ["test/e2e/**", "test/scale/**"],
      setupFiles: ["./test/apply-migrations.ts"],
      testTimeout: 30_000,
      hookTimeout: 60_000,
    },
  };
});
