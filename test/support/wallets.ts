import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { type FaultPoint, IN_FLIGHT_MS } from "../../src/durable-objects/wallet/wallet-types";
import { openWallet, walletStub } from "../../src/services/wallets";
import { call } from "./http";
import type { TestWalletDO } from "./test-wallet";
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

/** Runs `fn` inside `userId`'s wallet object, with its test hooks (test/support/test-wallet.ts). */
export function inWallet<T>(userId: string, fn: (wallet: TestWalletDO, state: DurableObjectState) => T | Promise<T>): Promise<T> {
  const stub = walletStub(env, userId) as unknown as DurableObjectStub<TestWalletDO>;
  return runInDurableObject(stub, (instance: TestWalletDO, state) => fn(instance, state));
}

/** Arms the test-only fault switch of `userId`'s wallet: its next transfer stops after `point`. */
export async function armFault(userId: string, point: FaultPoint, times = 1, mode: "stop" | "crash" = "stop"): Promise<void> {
  await inWallet(userId, (wallet) => wallet.armFault(point, times, mode));
}

/**
 * Runs `userId`'s recovery alarm as it runs once pending transfers are due: the wallet's clock
 * first moves `advanceMs` ahead (default: past a request's in-flight window). False when no alarm was set.
 */
export async function runRecovery(userId: string, advanceMs = IN_FLIGHT_MS + 1): Promise<boolean> {
  await inWallet(userId, (wallet) => wallet.advanceClock(advanceMs));
  return runDurableObjectAlarm(walletStub(env, userId));
}

type Answer = Awaited<ReturnType<typeof transfer>>;

/**
 * Sends `requests` to `senderId`'s held wallet one after another (each queued before the next is
 * sent), then releases them as one group; the answers, each as it comes.
 */
export async function queueOneGroup(senderId: string, token: string, requests: { body: unknown; key?: string }[]) {
  await inWallet(senderId, (wallet) => wallet.holdGroups());
  const answers: Promise<Answer>[] = [];
  for (const [i, request] of requests.entries()) {
    answers.push(transfer(token, request.body, request.key === undefined ? {} : { key: request.key }));
    for (let tries = 0; (await inWallet(senderId, (wallet) => wallet.waitingCount())) < i + 1; tries++) {
      if (tries > 500) throw new Error(`request ${i} never reached the wallet`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  await inWallet(senderId, (wallet) => wallet.releaseGroups());
  return answers;
}

/** `queueOneGroup`, all answers at once. */
export async function oneGroup(senderId: string, token: string, requests: { body: unknown; key?: string }[]): Promise<Answer[]> {
  return Promise.all(await queueOneGroup(senderId, token, requests));
}
