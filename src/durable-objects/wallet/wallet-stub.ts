/** The wallet Durable Object of `userId` (one per user, named by the user id). */
export function walletStub(env: Env, userId: string) {
  return env.WALLET.get(env.WALLET.idFromName(userId));
}
