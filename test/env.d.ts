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
        }
      >;
    }
  }
}
