import { app } from "./app";

export { WalletDO } from "./durable-objects/wallet/wallet-do";

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
