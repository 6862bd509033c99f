import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { unstable_readConfig } from "wrangler";
import { buildApp } from "./scripts/build-app.ts";

type D1Binding = { binding: string; database_name?: string; database_id?: string };

/** test/deploy-safety.test.ts: each environment of wrangler.toml as wrangler itself resolves it (Workers cannot read files). */
function wranglerEnvironments() {
  return Object.fromEntries(
    (["local", "dev", "production"] as const).map((name) => {
      const config = unstable_readConfig({ config: "./wrangler.toml", env: name === "local" ? undefined : name });
      const { workers_dev: workersDev, routes = [], route = null, vars, ratelimits } = config;
      const workflows = config.workflows.map(({ name, binding }: { name: string; binding: string }) => ({ name, binding }));
      // Bindings must be plain JSON: an absent id is left out, not undefined.
      const d1Databases = config.d1_databases.map(({ binding, database_name, database_id }: D1Binding) => ({
        binding,
        ...(database_name === undefined ? {} : { database_name }),
        ...(database_id === undefined ? {} : { database_id }),
      }));
      return [name, { name: config.name, workersDev, routes, route, vars, d1Databases, ratelimits, workflows }];
    }),
  );
}

/** The limit of the TEST_TIGHT_BUDGET binding (test/budgets.test.ts reads it as a binding too). */
const TIGHT_BUDGET = 3;

/** The Workers pool: the product's entry plus TestWalletDO, real D1 with migrations, real Durable Objects. */
export async function workersPlugin() {
  // The Worker imports the /app page's bundle (src/routes/app/app.bundle.js), made from its sources here as wrangler's [build] does.
  await buildApp();
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    // The product's entry plus TestWalletDO (fault switch, movable clock), bound as WALLET here
    // only: deployed Workers are built from src/index.ts and have neither.
    main: "./test/support/test-worker.ts",
    miniflare: {
      durableObjects: {
        WALLET: { className: "TestWalletDO", useSQLite: true },
        RATE_LIMITER: { className: "RateLimiterDO", useSQLite: true },
        REALTIME: { className: "RealtimeDO", useSQLite: true },
        CHAT: { className: "TestChatDO", useSQLite: true },
      },
      // The coarse budgets (wrangler.toml [[ratelimits]]) raised for the suite, which sends thousands
      // of requests per user and, mostly without CF-Connecting-IP, from one address; the budget path
      // still runs on every request. test/budgets.test.ts swaps in TEST_TIGHT_BUDGET per request.
      ratelimits: {
        USER_BUDGET: { namespace_id: "1001", simple: { limit: 1_000_000_000, period: 60 } },
        ADDRESS_BUDGET: { namespace_id: "1002", simple: { limit: 1_000_000_000, period: 60 } },
        TEST_TIGHT_BUDGET: { namespace_id: "9001", simple: { limit: TIGHT_BUDGET, period: 60 } },
      },
      bindings: {
        TEST_MIGRATIONS: migrations,
        TEST_WRANGLER_ENVIRONMENTS: wranglerEnvironments(),
        TEST_TIGHT_BUDGET_LIMIT: TIGHT_BUDGET,
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
  });
}

export default defineConfig(async () => ({
  test: {
    projects: [
      {
        plugins: [await workersPlugin()],
        test: {
          name: "workers",
          include: ["test/**/*.test.ts"],
          // test/scale: its own script (`npm run test:scale`), minutes long.
          exclude: ["test/e2e/**", "test/node/**", "test/scale/**"],
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
      {
        // The client SDK's unit tests, with fakes for fetch and WebSocket (client/test/*.test.ts).
        test: {
          name: "client",
          include: ["client/test/**/*.test.ts"],
          environment: "node",
        },
      },
    ],
  },
}));
