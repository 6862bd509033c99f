import { defineConfig } from "vitest/config";
import base from "./vitest.config.ts";

/** `npm run test:scale`: the reconciliation at 10,000 wallets / 100,000 transfers (minutes; not in `npm test`). */
export default defineConfig(async (env) => {
  const config = await (typeof base === "function" ? base(env) : base);
  return {
    ...config,
    test: { ...config.test, include: ["test/scale/**/*.test.ts"], exclude: [], testTimeout: 1_800_000 },
  };
});
