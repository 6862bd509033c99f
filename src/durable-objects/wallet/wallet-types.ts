import type { ErrorCode, Refusal } from "../../lib/errors";
import type { RateLimitDecision } from "../../lib/sliding-window";
import type { Message } from "../../schemas/message";
import type { Transfer, TransferWithStatus, Wallet } from "../../schemas/wallet";

/** What crosses RPC to and from the WalletDO (plain structured-clonable values). */

export const TRANSFER_WINDOW_HOURS = 24;
/**
 * The rolling send window in whole minutes. A send counts until the minute it was made is more
 * than WINDOW_MINUTES minutes old: 24 hours, rounded up to the end of its minute (never less).
 */
export const WINDOW_MINUTES = TRANSFER_WINDOW_HOURS * 60;

/**
 * How long the wallet keeps its credits debited per minute (`debited_by_minute`): longer than any
 * in-flight horizon a reconciliation asks about (the void deadline, below 24 h, plus 10 minutes).
 */
export const DEBITS_KEPT_MINUTES = 25 * 60;

/**
 * A transfer's own request is still working on it for this long after the debit: recovery (the
 * alarm) leaves it alone until then, so it never races a request that is about to finish.
 */
export const IN_FLIGHT_MS = 10_000;

/** Recovery backs off on repeated failures (D1 or the recipient down) up to this. */
export const MAX_RETRY_DELAY_MS = 5 * 60_000;

/** Pending transfers one alarm run finishes at most; it reschedules itself for the rest. */
export const RECOVERY_PAGE = 25;

/** A stored or fresh HTTP outcome: the exact envelope text, so a replay is byte-for-byte the original. */
export type StoredReply = { status: 201 | 202 | 409; body: string; replayed: boolean };

/**
 * How long the sender waits for one call out of the object (a recipient's credit or void, the
 * direct chat, a batch of messages) before giving that transfer up for now (recovery takes it
 * over): a hung recipient delays only its own transfers, never the sender's others or its
 * recovery page.
 */
export const CALL_TIMEOUT_MS = 5_000;

/** How long a request waits for its transfer to end after the debit before answering 202 `pending`. */
export const REQUEST_SETTLE_MS = 8_000;

/**
 * A refusal decided by the Worker before the wallet (400 validation, 403, 404). It is passed in
 * rather than answered by the Worker because a key with a stored outcome must answer that outcome
 * first (API.md §1): the wallet returns this refusal only for a key it does not know.
 */
export type PreCheckRefusal = { code: ErrorCode; details: string[] };

export type TransferCommand = {
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  /** Null: no Idempotency-Key, every request is a new transfer. */
  idempotencyKey: string | null;
  fingerprint: string | null;
  /** The Worker's checks failed: answered unless the key has a stored outcome. */
  refusal: PreCheckRefusal | null;
  /** The session (refresh-token family) of the caller's access token: ended, a new request is 401 `session_ended`. */
  sessionId: string;
  /** The direct chat of sender and recipient when it already exists (else created after the debit). */
  chatId: string | null;
  /** SIGNUP_CREDITS, for wallets opened on first use. */
  signupCredits: number;
  /** DAILY_TRANSFER_LIMIT: credits sendable per rolling 24 h. */
  dailyLimit: number;
  /** RATE_LIMIT_TRANSFERS_PER_MINUTE, counted here after the key lookup (a replay is never limited). */
  ratePerMinute: number;
  /** TRANSFER_VOID_AFTER_SECONDS in ms: the transfer's void deadline is fixed at its debit. */
  voidAfterMs: number;
};

/** What the sender's wallet hands the recipient's to credit or void a transfer. */
export type CreditCommand = {
  transferId: string;
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  senderBalance: number;
  messageId: string;
  /** The pair's direct chat when the sender already knows it; null for a first transfer (resolved after the credit). */
  chatId: string | null;
  createdAt: number;
  signupCredits: number;
};

/** The recipient's answer to credit or void: it credited (now or before), or the transfer is void forever. */
export type CreditResult = { credited: true; balanceAfter: number; creditedAt: number } | { credited: false; voidedAt: number };

/**
 * What a finished transfer tells the realtime layer; the caller publishes it (the Worker for a
 * request, the alarm for recovery). Present only on the call that moved the transfer to its end.
 */
export type TransferEvent =
  | { kind: "posted"; transfer: Transfer; message: Message; debitedAt: string; creditedAt: string }
  | { kind: "voided"; transfer: TransferWithStatus; senderWallet: Wallet };

export type TransferResult =
  | { ok: true; reply: StoredReply; rateLimit: RateLimitDecision | null; event: TransferEvent | null }
  | Refusal;

export type GrantCommand = {
  userId: string;
  amount: number;
  reason: string;
  grantedBy: string;
  /** The request that granted, for its audit row. */
  requestId: string;
  idempotencyKey: string | null;
  fingerprint: string | null;
  /** The Worker's admin check failed: answered unless the key has a stored outcome (as a transfer's pre-check). */
  refusal: PreCheckRefusal | null;
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
export const FAULT_POINTS = ["after_debit", "after_credit", "after_message", "after_posted"] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];
