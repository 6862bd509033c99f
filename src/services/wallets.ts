import { getConfig } from "../lib/config";
import { unwrap } from "../lib/errors";
import type { Wallet } from "../schemas/wallet";

/** The wallet Durable Object of `userId` (one per user, named by the user id). */
export function walletStub(env: Env, userId: string) {
  return env.WALLET.get(env.WALLET.idFromName(userId));
}

/**
 * Opens the wallet of a new user and applies the `SIGNUP_CREDITS` welcome grant exactly once
 * (a `grant` ledger entry). Idempotent: calling it again, or concurrently, changes nothing.
 * Registration calls it; wallets are also opened on first use, so a failure here is repaired later.
 */
export async function openWallet(env: Env, userId: string): Promise<Wallet> {
  return unwrap(await walletStub(env, userId).open(userId, getConfig(env).signupCredits));
}
