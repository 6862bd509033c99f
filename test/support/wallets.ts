import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { WalletDO } from "../../src/durable-objects/wallet/wallet-do";
import type { FaultPoint } from "../../src/durable-objects/wallet/wallet-types";
import { openWallet, walletStub } from "../../src/services/wallets";
import { call } from "./http";
import { seedUser } from "./users";

/** A seeded user whose wallet is open (with SIGNUP_CREDITS = 100 from wrangler.toml). */
export async function seedWalletUser(options: Parameters<typeof seedUser>[0] = {}) {
  const user = await seedUser(options);
  await openWallet(env, user.id);
  return user;
}

/** Vars that lift the per-user rate limits, for suites whose subject is not the limiter. */
export const NO_RATE_LIMIT = { RATE_LIMIT_TRANSFERS_PER_MINUTE: "1000000", RATE_LIMIT_MESSAGES_PER_MINUTE: "1000000" } as const;

export function transfer(
  token: string,
  body: unknown,
  options: { key?: string; vars?: Partial<Record<keyof Env, string>> } = {},
) {
  return call("POST", "/api/v1/messages/credit-transfer", {
    token,
    body,
    headers: options.key === undefined ? {} : { "Idempotency-Key": options.key },
    vars: options.vars ?? NO_RATE_LIMIT,
  });
}

export async function balanceOf(userId: string): Promise<number> {
  return runInDurableObject(
    walletStub(env, userId),
    (_instance, state) => state.storage.sql.exec<{ balance: number }>("SELECT balance FROM wallet").one().balance,
  );
}

/** Rows of one of the wallet's tables, straight from its SQLite. */
export async function rowsOf(userId: string, query: string): Promise<Record<string, unknown>[]> {
  return runInDurableObject(walletStub(env, userId), (_instance, state) => state.storage.sql.exec(query).toArray());
}

/** Arms the test-only fault switch of `userId`'s wallet: its next transfer stops after `point`. */
export async function armFault(userId: string, point: FaultPoint, times = 1, mode: "stop" | "crash" = "stop"): Promise<void> {
  await runInDurableObject(walletStub(env, userId), (instance: WalletDO) => instance.armFault(point, times, mode));
}
