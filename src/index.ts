import { app } from "./app";

export { RateLimiterDO } from "./durable-objects/rate-limiter/rate-limiter-do";
export { RealtimeDO } from "./durable-objects/realtime/realtime-do";
export { WalletDO } from "./durable-objects/wallet/wallet-do";

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
