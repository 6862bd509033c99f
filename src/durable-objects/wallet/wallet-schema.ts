import { applyMigrations } from "../object-migrations";
import { SESSIONS_MIGRATION } from "./sessions";
import { TRANSFER_STATE_TOTALS_MIGRATION, WALLET_TOTALS_MIGRATION } from "./wallet-totals";
import { DEBITS_KEPT_MINUTES } from "./wallet-types";

/** `debited_by_minute` from the ledger's debits of its last DEBITS_KEPT_MINUTES (v9; the reconciliation tests seed with it). */
export const DEBITED_BY_MINUTE_BACKFILL = `
  INSERT INTO debited_by_minute (minute, amount)
    SELECT created_at / 60000, -SUM(amount) FROM entries
    WHERE kind = 'transfer_out' AND created_at >= (SELECT MAX(created_at) FROM entries) - ${DEBITS_KEPT_MINUTES * 60_000}
    GROUP BY created_at / 60000;`;

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
  // v3 (money protocol v2): a transfer ends `posted` or `voided`; its message id is fixed at the
  // debit (the transfer id), so the credit can carry it before the message exists; `void_at` is
  // the deadline after which an uncredited transfer is voided (fixed by the var at the debit);
  // `retry_at` is when recovery may next touch a pending transfer (after its request's in-flight
  // window, then backing off). SQLite cannot change a CHECK, so the table is rebuilt.
  // `voided_in` is the recipient's record of a void: once written, a credit for that id is refused.
  // Partial indexes make recovery and key expiry index lookups (see wallet-recovery.test.ts).
  `
  CREATE TABLE transfers_out_v3 (
    transfer_id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    recipient_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    note TEXT,
    sender_balance INTEGER NOT NULL,
    recipient_balance INTEGER,
    message_id TEXT NOT NULL,
    chat_id TEXT,
    response TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    void_at INTEGER NOT NULL,
    retry_at INTEGER NOT NULL,
    posted_at INTEGER,
    voided_at INTEGER,
    CHECK (state != 'posted' OR (recipient_balance IS NOT NULL AND chat_id IS NOT NULL AND response IS NOT NULL)),
    CHECK (state != 'voided' OR (recipient_balance IS NULL AND response IS NOT NULL))
  );
  INSERT INTO transfers_out_v3 (transfer_id, idempotency_key, fingerprint, state, recipient_id, amount, note,
      sender_balance, recipient_balance, message_id, chat_id, response, attempts, created_at, void_at, retry_at, posted_at)
    SELECT transfer_id, idempotency_key, fingerprint, state, recipient_id, amount, note,
      sender_balance, recipient_balance, COALESCE(message_id, transfer_id), chat_id, response, attempts,
      created_at, created_at + 3600000, created_at, posted_at
    FROM transfers_out;
  DROP TABLE transfers_out;
  ALTER TABLE transfers_out_v3 RENAME TO transfers_out;
  CREATE INDEX transfers_out_due ON transfers_out (retry_at) WHERE state = 'pending';
  CREATE INDEX transfers_out_keyed ON transfers_out (created_at) WHERE idempotency_key IS NOT NULL;
  CREATE INDEX refusals_created ON refusals (created_at);
  CREATE INDEX grants_keyed ON grants (created_at) WHERE idempotency_key IS NOT NULL;
  CREATE TABLE voided_in (
    transfer_id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    note TEXT,
    sender_balance INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    voided_at INTEGER NOT NULL
  );
  `,
  // v4: running totals per entry kind, so reconciliation reads a wallet in O(1) and every entry checks
  // the books as it is written (wallet-totals.ts).
  WALLET_TOTALS_MIGRATION,
  // v5 (the wallet as modules): a credit no longer waits for the pair's direct chat (it is resolved
  // after the credit, so a void never creates one), so `transfers_in.chat_id` may be null; the
  // pending and voided transfers are counted in the running totals (books in O(1)); key expiry
  // and the next-expiry read skip pending transfers (a pending keyed transfer past retention must
  // not keep the alarm firing), and "stuck" is read by each transfer's own void deadline.
  `
  CREATE TABLE transfers_in_v5 (
    transfer_id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    note TEXT,
    sender_balance INTEGER NOT NULL,
    recipient_balance INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    chat_id TEXT,
    created_at INTEGER NOT NULL
  );
  INSERT INTO transfers_in_v5 SELECT transfer_id, sender_id, amount, note, sender_balance, recipient_balance, message_id,
    chat_id, created_at FROM transfers_in;
  DROP TABLE transfers_in;
  ALTER TABLE transfers_in_v5 RENAME TO transfers_in;
  ${TRANSFER_STATE_TOTALS_MIGRATION}
  DROP INDEX transfers_out_keyed;
  CREATE INDEX transfers_out_keyed_ended ON transfers_out (created_at) WHERE idempotency_key IS NOT NULL AND state != 'pending';
  CREATE INDEX transfers_out_pending_void ON transfers_out (void_at) WHERE state = 'pending';
  CREATE INDEX transfers_out_pending_created ON transfers_out (created_at) WHERE state = 'pending';
  `,
  // v6 (chats as objects): the owner's message-send keys (send-gate.ts). A send's outcome is
  // stored in its chat object; this registry makes a key name one request across every endpoint
  // of its owner (a message key is refused for a transfer, and the other way round).
  `
  CREATE TABLE message_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX message_keys_created ON message_keys (created_at);
  `,
  // v7 (sessions in the user's object): refresh-token families and their tokens, moved out of D1's
  // `refresh_tokens` so that one transaction of the owner decides every rotation and revocation
  // (sessions.ts). Nothing is copied: the tokens of D1 had another format and are refused.
  SESSIONS_MIGRATION,
  // v8 (membership owned by the chat): a send's key is scoped to its chat and stored only there
  // (API.md §1), so the owner's message-key registry goes; the owner's chats are counted here
  // (memberships.ts: MAX_CHATS_PER_USER, MAX_GROUPS_OWNED), each row the user's place in one chat
  // as that chat last told it (`version`, forward only; `role` NULL once gone, kept so an older
  // word from the chat cannot count it again). Version 0: counted by an admission the chat has not
  // confirmed yet.
  `
  DROP TABLE message_keys;
  CREATE TABLE chat_links (
    chat_id TEXT PRIMARY KEY,
    role TEXT CHECK (role IN ('owner', 'member')),
    version INTEGER NOT NULL
  );
  CREATE INDEX chat_links_role ON chat_links (role) WHERE role IS NOT NULL;
  `,
  // v9 (keys kept from the end, bounded books, grants audited by their owner):
  // - a transfer's key is kept 24 h after the transfer ENDED (posted or voided), not after its debit
  //   (API.md §1), so key expiry reads the end time through an index on it;
  // - `debited_by_minute`: credits debited per minute, never reduced by a void (unlike
  //   sent_by_minute), kept DEBITS_KEPT_MINUTES: what books() sums for the in-flight bound, a
  //   bounded number of rows whatever the traffic (it read every debit of the horizon);
  // - `transfers_in.posted_at`: when this recipient learned from the sender that the transfer's
  //   message is posted; until then its view of the transfer is `pending`;
  // - `audit_outbox`: a grant's audit row, written in the grant's transaction and delivered to D1
  //   by the alarm until acknowledged (audit-outbox.ts).
  `
  DROP INDEX transfers_out_keyed_ended;
  CREATE INDEX transfers_out_keyed_end ON transfers_out (COALESCE(posted_at, voided_at))
    WHERE idempotency_key IS NOT NULL AND state != 'pending';
  CREATE TABLE debited_by_minute (
    minute INTEGER PRIMARY KEY,
    amount INTEGER NOT NULL CHECK (amount >= 0)
  );
  ${DEBITED_BY_MINUTE_BACKFILL}
  ALTER TABLE transfers_in ADD COLUMN posted_at INTEGER;
  CREATE TABLE audit_outbox (
    id TEXT PRIMARY KEY,
    entry TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER NOT NULL
  );
  CREATE INDEX audit_outbox_due ON audit_outbox (retry_at);
  `,
  // v10 "account facts" (ARCHITECTURE.md §11): the owner's status, role and blocks, each change a
  // new version of the user's facts; the outbox of D1 index writes owed (one row per version,
  // deleted when D1 acknowledged it), the chats owed the current facts (a walk over all the
  // user's chats, and single chats that did not answer yet), retried by the alarm without limit;
  // the direct chat of each person this user paid (a pair's chat never changes), so a transfer
  // to someone paid before resolves its chat without the directory; and the copies of other
  // owners' facts this user's transfers need: that a user exists and whether they block this
  // one, at their version (applied forward only, pushed by their outbox on every change).
  `
  CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    version INTEGER NOT NULL CHECK (version >= 0),
    opened_at INTEGER NOT NULL
  );
  CREATE TABLE account_blocks (
    blocked_id TEXT PRIMARY KEY,
    blocked INTEGER NOT NULL CHECK (blocked IN (0, 1)),
    version INTEGER NOT NULL
  );
  CREATE TABLE facts_index_outbox (
    version INTEGER PRIMARY KEY,
    change TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE facts_walk (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    after_chat_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER NOT NULL
  );
  CREATE TABLE facts_targets (
    target TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER NOT NULL
  );
  CREATE INDEX facts_targets_retry ON facts_targets (retry_at);
  CREATE TABLE pair_chats (
    other_id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL
  );
  CREATE TABLE peer_facts (
    user_id TEXT PRIMARY KEY,
    blocks_me INTEGER NOT NULL CHECK (blocks_me IN (0, 1)),
    version INTEGER NOT NULL
  );
  `,
  // v11 (grant keys scoped per admin, API.md §1): in an ADMIN's object, the grant keys that admin
  // claimed (grant-claims.ts): which user and which request each names, so the same key for
  // another user or body is 409 whichever user's object holds the grant. `token` names the request
  // holding a pending claim (only it may release it); `kept_from` is when its retention starts
  // (the claim while pending, the outcome once done), what expiry reads through its index.
  `
  CREATE TABLE grant_claims (
    idempotency_key TEXT PRIMARY KEY,
    target_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    claimed_at INTEGER NOT NULL,
    kept_from INTEGER NOT NULL
  );
  CREATE INDEX grant_claims_kept ON grant_claims (kept_from);
  `,
];

export type GrantClaimRow = {
  idempotency_key: string;
  target_id: string;
  fingerprint: string;
  token: string;
  state: "pending" | "done";
  claimed_at: number;
  kept_from: number;
};

export type ChatLinkRow = { chat_id: string; role: "owner" | "member" | null; version: number };

export type AuditOutboxRow = { id: string; entry: string; attempts: number; retry_at: number };

export type AccountRow = {
  user_id: string;
  status: "active" | "suspended";
  role: "user" | "admin";
  version: number;
  opened_at: number;
};

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
  state: TransferState;
  recipient_id: string;
  amount: number;
  note: string | null;
  sender_balance: number;
  recipient_balance: number | null;
  message_id: string;
  chat_id: string | null;
  response: string | null;
  attempts: number;
  created_at: number;
  void_at: number;
  retry_at: number;
  posted_at: number | null;
  voided_at: number | null;
};

export type TransferState = "pending" | "posted" | "voided";

export type VoidedInRow = {
  transfer_id: string;
  sender_id: string;
  amount: number;
  note: string | null;
  sender_balance: number;
  created_at: number;
  voided_at: number;
};

export type TransferInRow = {
  transfer_id: string;
  sender_id: string;
  amount: number;
  note: string | null;
  sender_balance: number;
  recipient_balance: number;
  message_id: string;
  chat_id: string | null;
  created_at: number;
  /** When this recipient learned its message was posted (v7); null: not yet known, the view says `pending`. */
  posted_at: number | null;
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
  applyMigrations(storage, MIGRATIONS);
}

/**
 * The queries recovery and key expiry run on every alarm, named so that
 * test/wallets/wallet-query-plan.test.ts can show each is an index lookup (the partial indexes of
 * v3), never a scan of a wallet's history.
 */
export const RECOVERY_SQL = {
  /** Pending transfers whose turn has come, oldest turn first (a page). */
  due: "SELECT * FROM transfers_out WHERE state = 'pending' AND retry_at <= ? ORDER BY retry_at LIMIT ?",
  /** When the next pending transfer is due (null: none pending). */
  nextDue: "SELECT MIN(retry_at) AS t FROM transfers_out WHERE state = 'pending'",
  /** The oldest stored outcome of each kind of key, for the next expiry. */
  /** A transfer's key is kept from its END (posted or voided), API.md §1. */
  oldestTransferKey:
    "SELECT MIN(COALESCE(posted_at, voided_at)) AS t FROM transfers_out WHERE idempotency_key IS NOT NULL AND state != 'pending'",
  oldestRefusal: "SELECT MIN(created_at) AS t FROM refusals",
  oldestGrantKey: "SELECT MIN(created_at) AS t FROM grants WHERE idempotency_key IS NOT NULL",
  /** Key expiry, a bounded batch each (transfers and grants stay as history; only their key and stored reply go). */
  expireTransferKeys: `UPDATE transfers_out SET idempotency_key = NULL, fingerprint = NULL
    WHERE rowid IN (SELECT rowid FROM transfers_out
      WHERE idempotency_key IS NOT NULL AND state != 'pending' AND COALESCE(posted_at, voided_at) < ? LIMIT ?)`,
  expireRefusals: "DELETE FROM refusals WHERE rowid IN (SELECT rowid FROM refusals WHERE created_at < ? LIMIT ?)",
  expireGrantKeys: `UPDATE grants SET idempotency_key = NULL, fingerprint = NULL, response = NULL
    WHERE rowid IN (SELECT rowid FROM grants WHERE idempotency_key IS NOT NULL AND created_at < ? LIMIT ?)`,
  /** An admin's grant-key claims (grant-claims.ts), kept from their outcome (or, never settled, their claim). */
  oldestGrantClaim: "SELECT MIN(kept_from) AS t FROM grant_claims",
  expireGrantClaims: "DELETE FROM grant_claims WHERE rowid IN (SELECT rowid FROM grant_claims WHERE kept_from < ? LIMIT ?)",
} as const;
