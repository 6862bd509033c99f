import type { D1Migration } from "@cloudflare/vitest-plugin";

declare global {
  namespace Cloudflare {
    interface Env {
      /** Injected by vitest.config.ts: the D1 migrations the setup file applies. */
      TEST_MIGRATIONS: D1Migration[];
      /** Injected by vitest.config.ts: wrangler.toml's local, dev and production environments as wrangler resolves them. */
      TEST_WRANGLER_ENVIRONMENTS: Record<
        "local" | "dev" | "production",
        {
          name: string;
          workersDev: boolean | undefined;
          routes: unknown[];
          route: unknown;
          vars: Record<string, unknown>;
          d1Databases: { binding: string; database_name?: string; database_id?: string }[];
          ratelimits: { name: string; namespace_id: string; simple: { limit: number; period: number } }[];
          workflows: { name: string; binding: string }[];
        }
      >;
      /** Injected by vitest.config.ts: a Rate Limiting binding with a small limit (TEST_TIGHT_BUDGET_LIMIT per minute). */
      TEST_TIGHT_BUDGET: RateLimit;
      TEST_TIGHT_BUDGET_LIMIT: number;
    }
  }
}
