import { DurableObject } from "cloudflare:workers";

/**
 * One wallet per user (`idFromName(userId)`), SQLite-backed. It serializes that wallet's credit
 * movements; the transfer protocol lives here (ARCHITECTURE.md §4).
 */
export class WalletDO extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS wallet (id INTEGER PRIMARY KEY CHECK (id = 1), balance INTEGER NOT NULL CHECK (balance >= 0), updated_at INTEGER NOT NULL)",
      );
    });
  }

  balance(): number {
    const row = this.ctx.storage.sql.exec<{ balance: number }>("SELECT balance FROM wallet WHERE id = 1").toArray()[0];
    return row?.balance ?? 0;
  }
}
