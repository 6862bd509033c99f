import { app } from "./app";
import { runScheduled } from "./services/maintenance";

export { RateLimiterDO } from "./durable-objects/rate-limiter/rate-limiter-do";
export { RealtimeDO } from "./durable-objects/realtime/realtime-do";
export { WalletDO } from "./durable-objects/wallet/wallet-do";
export { ReconciliationWorkflow } from "./workflows/reconciliation-workflow";

export default {
  fetch: app.fetch,
  // The Cron Trigger (wrangler.toml [triggers]): the daily reconciliation run and the D1 purge.
  scheduled: (controller, env, ctx) => ctx.waitUntil(runScheduled(env, controller.scheduledTime)),
} satisfies ExportedHandler<Env>;
