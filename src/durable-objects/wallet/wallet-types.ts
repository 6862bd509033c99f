/** What crosses RPC to and from the WalletDO (plain structured-clonable values). */

export const TRANSFER_WINDOW_HOURS = 24;
/**
 * The rolling send window in whole minutes. A send counts until the minute it was made is more
 * than WINDOW_MINUTES minutes old: 24 hours, rounded up to the end of its minute (never less).
 */
export const WINDOW_MINUTES = TRANSFER_WINDOW_HOURS * 60;

/** How long after the debit the alarm looks for a transfer that did not finish (and the retry backoff). */
export const RECOVERY_DELAY_MS = 5_000;

/** A stored or fresh HTTP outcome: the exact envelope text, so a replay is byte-for-byte the original. */
export type StoredReply = { status: 201 | 409; body: string; replayed: boolean };

export type TransferCommand = {
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  /** Null: no Idempotency-Key, every request is a new transfer. */
  idempotencyKey: string | null;
  fingerprint: string | null;
  /** SIGNUP_CREDITS, for wallets opened on first use. */
  signupCredits: number;
  /** DAILY_TRANSFER_LIMIT: credits sendable per rolling 24 h. */
  dailyLimit: number;
};

export type CreditCommand = {
  transferId: string;
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  senderBalance: number;
  messageId: string;
  chatId: string;
  createdAt: number;
  signupCredits: number;
};

export type GrantCommand = {
  userId: string;
  amount: number;
  reason: string;
  grantedBy: string;
  idempotencyKey: string | null;
  fingerprint: string | null;
  signupCredits: number;
};

/** A row of the ledger plus its position, for cursors. */
export type LedgerRow = {
  seq: number;
  id: string;
  transferId: string;
  kind: "transfer_out" | "transfer_in" | "grant" | "reversal_out" | "reversal_in";
  amount: number;
  balanceAfter: number;
  counterpartyId: string | null;
  messageId: string | null;
  note: string | null;
  createdAt: number;
};

/** Protocol steps after which the test-only fault switch can stop a transfer. */
export const FAULT_POINTS = ["after_debit", "after_message", "after_credit", "after_posted"] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];
