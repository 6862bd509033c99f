import { app } from "./app";
import { ChatObject } from "./durable-objects/chat/chat-do";
import { WalletObject } from "./durable-objects/wallet/wallet-do";
import { chatEffects } from "./services/chat-effects";
import { runScheduled } from "./services/maintenance";
import { walletEffects } from "./services/wallet-effects";

export { RateLimiterDO } from "./durable-objects/rate-limiter/rate-limiter-do";
export { RealtimeDO } from "./durable-objects/realtime/realtime-do";
export { AdminCommandWorkflow } from "./workflows/admin-command-workflow";
export { ReconciliationWorkflow } from "./workflows/reconciliation-workflow";

/** One wallet per user (durable-objects/wallet/wallet-do.ts), wired to this deployment's D1, realtime and wallets. */
export class WalletDO extends WalletObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { effects: walletEffects(env, (promise) => ctx.waitUntil(promise)) });
  }
}

/** One chat (durable-objects/chat/chat-do.ts), wired to this deployment's D1 directory and realtime. */
export class ChatDO extends ChatObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { effects: chatEffects(env) });
  }
}

export default {
  fetch: app.fetch,
  // The Cron Trigger (wrangler.toml [triggers]): the daily reconciliation run and the D1 purge.
  scheduled: (controller, env, ctx) => ctx.waitUntil(runScheduled(env, controller.scheduledTime)),
} satisfies ExportedHandler<Env>;
