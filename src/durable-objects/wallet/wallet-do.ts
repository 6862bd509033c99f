import { DurableObject } from "cloudflare:workers";
import type { Outcome } from "../../lib/errors";
import { newId } from "../../lib/ids";
import type { Wallet } from "../../schemas/wallet";
import { migrate, type WalletRow } from "./wallet-schema";

/** The welcome grant's ledger key: UNIQUE(transfer_id, kind) makes it happen at most once. */
export const SIGNUP_GRANT_ID = "signup";

/**
 * One wallet per user (`idFromName(userId)`), SQLite-backed. It serializes that wallet's credit
 * movements; the transfer protocol lives here (ARCHITECTURE.md §4). Every method is an RPC
 * whose refusals are values (`Outcome`), never thrown custom errors.
 *
 * Opening: `open(userId, signupCredits)` creates the wallet and applies the welcome grant exactly
 * once. Registration calls it; every other mutating entry point opens the wallet first too
 * (`ensureOpen`), so a user whose registration died between the D1 insert and `open` still gets
 * the grant on first use, and the recipient of a first transfer needs no separate step.
 */
export class WalletDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      migrate(ctx.storage);
    });
  }

  /** Idempotent: the first call creates the wallet with the `signupCredits` grant; later calls change nothing. */
  open(userId: string, signupCredits: number): Outcome<Wallet> {
    const row = this.ctx.storage.transactionSync(() => this.ensureOpen(userId, signupCredits, Date.now()));
    return { ok: true, value: toWallet(row) };
  }

  /** The wallet as stored; an unopened wallet is opened first (see the class comment). */
  wallet(userId: string, signupCredits: number): Outcome<Wallet> {
    return this.open(userId, signupCredits);
  }

  // ------------------------------------------------------------------ internals (synchronous)

  private walletRow(): WalletRow | undefined {
    return this.sql.exec<WalletRow>("SELECT user_id, balance, opened_at, updated_at FROM wallet WHERE id = 1").toArray()[0];
  }

  /** Must run inside transactionSync. */
  private ensureOpen(userId: string, signupCredits: number, now: number): WalletRow {
    const existing = this.walletRow();
    if (existing) {
      if (existing.user_id !== userId) throw new Error(`wallet of ${existing.user_id} addressed as ${userId}`);
      return existing;
    }
    this.sql.exec("INSERT INTO wallet (id, user_id, balance, opened_at, updated_at) VALUES (1, ?, 0, ?, ?)", userId, now, now);
    if (signupCredits > 0) this.applyCredit(SIGNUP_GRANT_ID, "grant", signupCredits, null, null, "Welcome credits", now);
    return this.walletRow()!;
  }

  /** Adds `amount` (> 0) and writes its entry; returns the balance after. Inside transactionSync. */
  private applyCredit(
    transferId: string,
    kind: "grant" | "transfer_in" | "reversal_in",
    amount: number,
    counterpartyId: string | null,
    messageId: string | null,
    note: string | null,
    now: number,
  ): number {
    const balance = this.walletRow()!.balance + amount;
    this.sql.exec("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1", balance, now);
    this.sql.exec(
      "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, message_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      newId(now),
      transferId,
      kind,
      amount,
      balance,
      counterpartyId,
      messageId,
      note,
      now,
    );
    return balance;
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

function toWallet(row: WalletRow): Wallet {
  return { userId: row.user_id, balance: row.balance, updatedAt: iso(row.updated_at) };
}
