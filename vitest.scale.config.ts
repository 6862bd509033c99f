import { defineConfig } from "vitest/config";
import { workersPlugin } from "./vitest.config.ts";

/** `npm run test:scale`: the reconciliation at 10,000 wallets / 100,000 transfers (minutes; not in `npm test`). */
export default defineConfig(async () => ({
  plugins: [await workersPlugin()],
  test: {
    include: ["test/scale/**/*.test.ts"],
    setupFiles: ["./test/apply-migrations.ts"],
    testTimeout: 1_800_000,
    hookTimeout: 600_000,
  },
}));
