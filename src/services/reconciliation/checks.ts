import type { IncomingRow, OutgoingRow, TransferSides, WalletBooks } from "../../durable-objects/wallet/wallet-books";
import type { WalletTotals } from "../../durable-objects/wallet/wallet-totals";
import type { Discrepancy, DiscrepancyKind } from "../../schemas/wallet";

/**
 * The reconciliation's math, as pure functions over rows (no I/O): what a page of wallet books
 * and message aggregates says, which transfers look wrong, and what is wrong with one transfer
 * once both wallets and its message have been re-read. run.ts does the reading.
 */

export type Finding = Discrepancy;

/** One row per problem: found from both wallets of a transfer, or on a retried step, it is still one. */
export const findingKey = (f: Finding) => `${f.kind}:${f.transferId ?? f.userId ?? "-"}`;

/**
 * A transfer to re-read, with what is known of its two wallets, and the chat a message of it was
 * seen in when that is not the pair's direct chat (its message is looked for there too).
 */
export type Suspect = { transferId: string; senderId: string | null; recipientId: string | null; chatId?: string | null };

export type MessageAggregate = { count: number; amount: number };

/** A `credit_transfer` message as reconciliation reads it, and the chat it is in. */
export type TransferMessage = {
  id: string;
  chatId: string;
  transferId: string;
  senderId: string;
  recipientId: string | null;
  amount: number | null;
};

/**
 * The run's settled bound: a transfer id below it was created before the end of the cut's second
 * (ids start with their Unix second, API.md "IDs"). Wallets and messages are compared below it
 * only, so transfers made while the run walks change neither side; the next run checks them.
 */
export function settledBefore(cutoffAt: number): string {
  return (Math.floor(cutoffAt / 1000) + 1).toString(16).padStart(8, "0") + "0".repeat(16);
}

// ------------------------------------------------------------------ sums

/** What the run adds up over all wallets (totals at the cut, magnitudes). */
export type Sums = {
  wallets: number;
  balance: number;
  granted: number;
  sent: number;
  received: number;
  reversedIn: number;
  reversedOut: number;
  inFlightBound: number;
  pendingTransfers: number;
  stuckTransfers: number;
};

export const emptySums = (): Sums => ({
  wallets: 0,
  balance: 0,
  granted: 0,
  sent: 0,
  received: 0,
  reversedIn: 0,
  reversedOut: 0,
  inFlightBound: 0,
  pendingTransfers: 0,
  stuckTransfers: 0,
});

export function addSums(a: Sums, b: Sums): Sums {
  const out = { ...a };
  for (const key of Object.keys(out) as (keyof Sums)[]) out[key] += b[key];
  return out;
}

/** What wallets' books add up to at the cut. */
export function sumBooks(page: WalletBooks[]): Sums {
  return page.map(sumsOf).reduce(addSums, emptySums());
}

function sumsOf(books: WalletBooks): Sums {
  const t: WalletTotals = books.atCut.totals;
  return {
    wallets: 1,
    balance: books.atCut.balance,
    granted: t.grant.amount,
    sent: t.transfer_out.amount,
    received: t.transfer_in.amount,
    reversedIn: t.reversal_in.amount,
    reversedOut: t.reversal_out.amount,
    inFlightBound: books.inFlightBound,
    pendingTransfers: books.pending.count,
    stuckTransfers: books.stuckCount,
  };
}

/** Credits that left senders by the cut and had neither arrived nor returned by it. */
export const inFlightAt = (s: Sums) => s.sent - s.received - s.reversedIn + s.reversedOut;

/** The books of all wallets at the cut: Σ balance + in flight = Σ granted holds by construction; in flight must be plausible. */
export function checkTotals(s: Sums): Finding | null {
  const inFlight = inFlightAt(s);
  if (inFlight >= 0 && inFlight <= s.inFlightBound) return null;
  return {
    kind: "totals",
    userId: null,
    transferId: null,
    detail:
      inFlight < 0
        ? `${-inFlight} more credits arrived or returned than left senders (sent ${s.sent}, received ${s.received}, reversed in ${s.reversedIn}, reversed out ${s.reversedOut})`
        : `${inFlight} credits left senders without arriving or returning, but at most ${s.inFlightBound} can be in flight`,
  };
}

// ------------------------------------------------------------------ a page of wallets

export type PageVerdict = {
  sums: Sums;
  /** Wallets whose own books are wrong (re-read before reporting). */
  ledgerSuspects: string[];
  /** Wallets whose sent transfers do not match their messages, or whose credits do not: drilled transfer by transfer. */
  drillOut: string[];
  drillIn: string[];
  /** Pending transfers past their own void deadline, re-read before reporting. */
  stuck: Suspect[];
};

/**
 * A page of wallets against their transfer messages, by aggregate, below the run's settled bound:
 * a wallet's posted transfers against the transfer messages it sent, and its credits against the
 * transfer messages its direct chats hold from the other member. Equal counts and sums: nothing
 * to look at; any difference (a transfer in flight, or a real problem) sends that wallet to the drill.
 */
export function checkPage(
  page: WalletBooks[],
  bySender: ReadonlyMap<string, MessageAggregate>,
  byRecipient: ReadonlyMap<string, MessageAggregate>,
): PageVerdict {
  const verdict: PageVerdict = { sums: sumBooks(page), ledgerSuspects: [], drillOut: [], drillIn: [], stuck: [] };
  for (const books of page) {
    if (books.problems.length > 0) verdict.ledgerSuspects.push(books.userId);
    const none = { count: 0, amount: 0 };
    // A void writes its refund in the same transaction as the state: refunds equal voids, always.
    const refunds = books.totals.reversal_in;
    if (!sameAggregate(books.settled.posted, bySender.get(books.userId) ?? none) || !sameAggregate(refunds, books.voided)) {
      verdict.drillOut.push(books.userId);
    }
    if (!sameAggregate(books.settled.credits, byRecipient.get(books.userId) ?? none)) verdict.drillIn.push(books.userId);
    for (const stuck of books.stuck) {
      verdict.stuck.push({ transferId: stuck.transferId, senderId: books.userId, recipientId: stuck.recipientId });
    }
  }
  return verdict;
}

export const sameAggregate = (a: MessageAggregate, b: MessageAggregate) => a.count === b.count && a.amount === b.amount;

// ------------------------------------------------------------------ the drill: one wallet, transfer by transfer

/**
 * One page of a sender's transfers (by id) against its messages in the same id range: what
 * does not pair up exactly is a suspect. A pending transfer is in flight whatever it has.
 */
export function pairOutgoing(senderId: string, rows: OutgoingRow[], messages: TransferMessage[]): Suspect[] {
  const byTransfer = new Map(messages.map((m) => [m.transferId, m]));
  const suspects: Suspect[] = [];
  for (const row of rows) {
    const message = byTransfer.get(row.transferId);
    byTransfer.delete(row.transferId);
    const suspect = { transferId: row.transferId, senderId, recipientId: row.recipientId };
    if (row.state === "pending") continue;
    if (row.state === "posted") {
      if (!message || !messageMatches(message, senderId, row)) suspects.push(suspect);
    } else if (message || !row.refunded) suspects.push(suspect);
  }
  for (const message of byTransfer.values()) {
    suspects.push({ transferId: message.transferId, senderId, recipientId: message.recipientId, chatId: message.chatId });
  }
  return suspects;
}

/** One page of a recipient's credits against the messages addressed to it in the same id range. */
export function pairIncoming(recipientId: string, rows: IncomingRow[], messages: TransferMessage[]): Suspect[] {
  const byTransfer = new Map(messages.map((m) => [m.transferId, m]));
  const suspects: Suspect[] = [];
  for (const row of rows) {
    const message = byTransfer.get(row.transferId);
    byTransfer.delete(row.transferId);
    if (!message || message.senderId !== row.senderId || message.amount !== row.amount) {
      // The message names the sender as the transfer did; the credit's own counterparty may be what is wrong.
      suspects.push({ transferId: row.transferId, senderId: message?.senderId ?? row.senderId, recipientId });
    }
  }
  for (const message of byTransfer.values()) {
    suspects.push({ transferId: message.transferId, senderId: message.senderId, recipientId, chatId: message.chatId });
  }
  return suspects;
}

/**
 * The messages a drill step found that the walk counted for this wallet: those it sent (`out`), or
 * those the other member sent it (`in`). Added up over the drill's first pass and equal to the
 * walk's totals, every message of the wallet was one of its transfers' (or credits'), paired there.
 */
export function seenAggregate(userId: string, direction: "out" | "in", messages: readonly TransferMessage[]): MessageAggregate {
  const counted = messages.filter((m) => (direction === "out") === (m.senderId === userId));
  return { count: counted.length, amount: counted.reduce((sum, m) => sum + (m.amount ?? 0), 0) };
}

function messageMatches(
  message: TransferMessage,
  senderId: string,
  out: { recipientId: string; amount: number; messageId: string | null },
): boolean {
  return (
    message.senderId === senderId &&
    message.recipientId === out.recipientId &&
    message.amount === out.amount &&
    (out.messageId === null || out.messageId === message.id)
  );
}

// ------------------------------------------------------------------ the verdict on one transfer, after its re-read

export type TransferReading = {
  transferId: string;
  senderId: string | null;
  /** The sender's object (null: no sender known). */
  sender: TransferSides | null;
  /** The recipient's object, as named by the transfer (or by the credit or message if there is no transfer). */
  recipientId: string | null;
  recipient: TransferSides | null;
  /** Another wallet that holds a credit for this transfer (the suspect came from there), if any. */
  strayCredit: { userId: string; credit: NonNullable<TransferSides["credit"]> } | null;
  message: TransferMessage | null;
  /** The run's reference time (its cut): a pending transfer whose own void deadline is before it is stuck. */
  stuckBefore: number;
};

/**
 * Everything wrong with one transfer, read in this order: the sender, then the recipient, then the
 * message. A posted or voided transfer is final (its credit and message came before it was posted;
 * after a void neither can come), so what this sees of it cannot be a transfer in flight; a pending
 * one is in flight, and only reported when past its own void deadline.
 */
export function classifyTransfer(r: TransferReading): Finding[] {
  const findings: Finding[] = [];
  const note = (kind: DiscrepancyKind, userId: string | null, detail: string) =>
    findings.push({ kind, userId, transferId: r.transferId, detail });
  const out = r.sender?.out ?? null;
  const credit = r.recipient?.credit ?? null;
  const message = r.message;
  if (r.strayCredit) {
    note(
      "mismatched_transfer_in",
      r.strayCredit.userId,
      `credited ${r.strayCredit.credit.amount} to ${r.strayCredit.userId}, but the transfer's recipient is ${out?.recipientId ?? r.recipientId ?? "unknown"}`,
    );
  }
  if (!out) {
    if (credit)
      note(
        "orphan_transfer_in",
        r.recipientId,
        `credit of ${credit.amount} from ${credit.senderId ?? "unknown"} without a transfer`,
      );
    if (message) note("orphan_transfer_message", message.senderId, `credit_transfer message ${message.id} without a transfer`);
    return findings;
  }
  if (credit && (credit.amount !== out.amount || (credit.senderId !== null && credit.senderId !== r.senderId))) {
    note(
      "mismatched_transfer_in",
      r.recipientId,
      `transfer of ${out.amount} from ${r.senderId} but credit of ${credit.amount} from ${credit.senderId ?? "unknown"}`,
    );
  }
  if (out.state === "pending") {
    // Its own deadline, fixed at the debit: the current TRANSFER_VOID_AFTER_SECONDS may differ.
    if (out.voidAt < r.stuckBefore) {
      note(
        "stuck_transfer",
        r.senderId,
        `pending since ${new Date(out.createdAt).toISOString()}, past its void deadline ${new Date(out.voidAt).toISOString()}, ${out.amount} to ${out.recipientId}`,
      );
    }
    return findings;
  }
  if (out.state === "voided") {
    if (credit)
      note("voided_transfer_credited", r.recipientId, `voided transfer of ${out.amount} credited to ${out.recipientId}`);
    if (message) note("voided_transfer_message", r.senderId, `voided transfer has message ${message.id}`);
    if (!r.sender?.refund) note("unrefunded_void", r.senderId, `voided transfer of ${out.amount} without a reversal_in entry`);
    else if (r.sender.refund.amount !== out.amount) {
      note("unrefunded_void", r.senderId, `voided transfer of ${out.amount} refunded ${r.sender.refund.amount}`);
    }
    return findings;
  }
  if (!credit)
    note("unpaired_transfer_out", r.senderId, `posted transfer of ${out.amount} to ${out.recipientId} was never credited`);
  if (!message)
    note("missing_transfer_message", r.senderId, `posted transfer of ${out.amount} to ${out.recipientId} has no message`);
  else if (r.senderId === null || !messageMatches(message, r.senderId, out)) {
    note(
      "mismatched_transfer_message",
      r.senderId,
      `message ${message.id} says ${message.amount} from ${message.senderId} to ${message.recipientId}; the transfer ${out.amount} to ${out.recipientId}`,
    );
  }
  return findings;
}

/** A wallet's own problems, after its books were read again. */
export const ledgerFindings = (books: WalletBooks): Finding[] =>
  books.problems.length === 0
    ? []
    : [{ kind: "wallet_ledger", userId: books.userId, transferId: null, detail: books.problems.join("; ") }];
