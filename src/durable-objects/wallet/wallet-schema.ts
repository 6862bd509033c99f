import { WALLET_TOTALS_MIGRATION } from "./wallet-totals";

/**
 * The WalletDO's own SQLite schema. Each entry of MIGRATIONS is one version, applied in order
 * inside one transaction from the constructor (under blockConcurrencyWhile); the applied version is
 * kept in `schema_version`. Never edit a shipped entry: append a new one.
 *
 * Invariants held by the schema itself: a balance cannot go below zero (CHECK), a transfer moves
 * each side once (UNIQUE(transfer_id, kind)), and an idempotency key names one operation (UNIQUE).
 */
export const MIGRATIONS: readonly string[] = [
  // v1
  `
  CREATE TABLE wallet (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    opened_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    transfer_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('transfer_out', 'transfer_in', 'grant', 'reversal_out', 'reversal_in')),
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    counterparty_id TEXT,
    message_id TEXT,
    note TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (transfer_id, kind)
  );
  CREATE INDEX entries_kind_created ON entries (kind, created_at);
  CREATE TABLE transfers_out (
    transfer_id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted')),
    recipient_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    note TEXT,
    sender_balance INTEGER NOT NULL,
    recipient_balance INTEGER,
    message_id TEXT,
    chat_id TEXT,
    response TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    posted_at INTEGER
  );
  CREATE INDEX transfers_out_state ON transfers_out (state, created_at);
  CREATE TABLE transfers_in (
    transfer_id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    note TEXT,
    sender_balance INTEGER NOT NULL,
    recipient_balance INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE refusals (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    granted_by TEXT,
    amount INTEGER NOT NULL CHECK (amount > 0),
    reason TEXT NOT NULL,
    balance_after INTEGER NOT NULL,
    response TEXT,
    created_at INTEGER NOT NULL
  );
  `,
  // v2: credits sent per minute, so the rolling-window check sums at most WINDOW_MINUTES + 1 rows
  // instead of every transfer of the last 24 h (a hot sender has hundreds of thousands).
  `
  CREATE TABLE sent_by_minute (
    minute INTEGER PRIMARY KEY,
    amount INTEGER NOT NULL CHECK (amount >= 0)
  );
  INSERT INTO sent_by_minute (minute, amount)
    SELECT created_at / 60000, -SUM(amount) FROM entries WHERE kind = 'transfer_out' GROUP BY created_at / 60000;
  `,
  // Running totals per entry kind, so reconciliation reads a wallet in O(1) and every entry checks
  // the books as it is written (wallet-totals.ts).
  WALLET_TOTALS_MIGRATION,
];

export type WalletRow = { user_id: string; balance: number; opened_at: number; updated_at: number };

export type EntryRow = {
  seq: number;
  id: string;
  transfer_id: string;
  kind: "transfer_out" | "transfer_in" | "grant" | "reversal_out" | "reversal_in";
  amount: number;
  balance_after: number;
  counterparty_id: string | null;
  message_id: string | null;
  note: string | null;
  created_at: number;
};

export type TransferOutRow = {
  transfer_id: string;
  idempotency_key: string | null;
  fingerprint: string | null;
  state: "pending" | "posted";
  recipient_id: string;
  amount: number;
  note: string | null;
  sender_balance: number;
  recipient_balance: number | null;
  message_id: string | null;
  chat_id: string | null;
  response: string | null;
  attempts: number;
  created_at: number;
  posted_at: number | null;
};

export type TransferInRow = {
  transfer_id: string;
  sender_id: string;
  amount: number;
  note: string | null;
  sender_balance: number;
  recipient_balance: number;
  message_id: string;
  chat_id: string;
  created_at: number;
};

export type RefusalRow = { idempotency_key: string; fingerprint: string; response: string; created_at: number };

export type GrantRow = {
  grant_id: string;
  idempotency_key: string | null;
  fingerprint: string | null;
  granted_by: string | null;
  amount: number;
  reason: string;
  balance_after: number;
  response: string | null;
  created_at: number;
};

/** Applies every migration newer than the stored version, in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  const sql = storage.sql;
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
  const current = sql.exec<{ version: number }>("SELECT version FROM schema_version WHERE id = 1").toArray()[0]?.version ?? 0;
  if (current >= MIGRATIONS.length) return;
  storage.transactionSync(() => {
    for (let version = current; version < MIGRATIONS.length; version += 1) sql.exec(MIGRATIONS[version]!);
    sql.exec(
      "INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
      MIGRATIONS.length,
    );
  });
}
