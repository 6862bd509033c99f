import type { D1Migration } from "@cloudflare/vitest-plugin";

declare global {
  namespace Cloudflare {
    interface Env {
      /** Injected by vitest.config.ts: the D1 migrations the setup file applies. */
      TEST_MIGRATIONS: D1Migration[];
    }
  }
}
