import { successBody } from "../../lib/envelope";
import { invariant } from "../../lib/errors";
import type { TransferWithStatus, Wallet } from "../../schemas/wallet";
import type { EntryRow, TransferInRow, TransferOutRow, VoidedInRow, WalletRow } from "./wallet-schema";
import type { LedgerRow, StoredReply } from "./wallet-types";

/** How a wallet's rows look from outside: pure functions from rows to the API's shapes. */

const iso = (ms: number) => new Date(ms).toISOString();

export function toWallet(row: WalletRow): Wallet {
  return { userId: row.user_id, balance: row.balance, updatedAt: iso(row.updated_at) };
}

export function toLedgerRow(row: EntryRow): LedgerRow {
  return {
    seq: row.seq,
    id: row.id,
    transferId: row.transfer_id,
    kind: row.kind,
    amount: row.amount,
    balanceAfter: row.balance_after,
    counterpartyId: row.counterparty_id,
    messageId: row.message_id,
    note: row.note,
    createdAt: row.created_at,
  };
}

type TransferFields = {
  senderId: string;
  recipientId: string;
  amount: number;
  senderBalance: number;
  recipientBalance: number | null;
  transferId: string;
  messageId: string | null;
  chatId: string | null;
  createdAt: number;
};

/** The one shape of a transfer, from whichever side's rows. */
function toTransfer(status: TransferWithStatus["status"], fields: TransferFields): TransferWithStatus {
  return {
    senderId: fields.senderId,
    recipientId: fields.recipientId,
    transferredAmount: fields.amount,
    senderBalance: fields.senderBalance,
    recipientBalance: fields.recipientBalance,
    transferId: fields.transferId,
    messageId: fields.messageId,
    chatId: fields.chatId,
    createdAt: iso(fields.createdAt),
    status,
  };
}

/** A transfer this wallet sent, as its sender sees it: the recipient's side only once posted. */
export function sentTransfer(senderId: string, row: TransferOutRow): TransferWithStatus {
  const posted = row.state === "posted";
  return toTransfer(row.state, {
    senderId,
    recipientId: row.recipient_id,
    amount: row.amount,
    senderBalance: row.sender_balance,
    recipientBalance: posted ? row.recipient_balance : null,
    transferId: row.transfer_id,
    messageId: posted ? row.message_id : null,
    chatId: posted ? row.chat_id : null,
    createdAt: row.created_at,
  });
}

/**
 * A transfer this wallet received: credited, and `posted` once its message is (API.md: the message
 * comes after the credit). Until then it is `pending`, with the credit (the balance after it) but
 * no message or chat yet, as its sender sees a pending transfer.
 */
export function receivedTransfer(recipientId: string, row: TransferInRow): TransferWithStatus {
  const posted = row.posted_at !== null;
  return toTransfer(posted ? "posted" : "pending", {
    senderId: row.sender_id,
    recipientId,
    amount: row.amount,
    senderBalance: row.sender_balance,
    recipientBalance: row.recipient_balance,
    transferId: row.transfer_id,
    messageId: posted ? row.message_id : null,
    chatId: posted ? row.chat_id : null,
    createdAt: row.created_at,
  });
}

/** A transfer voided before it reached this wallet. */
export function voidedTransfer(recipientId: string, row: VoidedInRow): TransferWithStatus {
  return toTransfer("voided", {
    senderId: row.sender_id,
    recipientId,
    amount: row.amount,
    senderBalance: row.sender_balance,
    recipientBalance: null,
    transferId: row.transfer_id,
    messageId: null,
    chatId: null,
    createdAt: row.created_at,
  });
}

/** The stored reply of a transfer that ended (posted: its 201; voided: its 409). */
export function endedReply(row: TransferOutRow, replayed: boolean): StoredReply {
  invariant(row.state !== "pending" && row.response !== null, `transfer ${row.transfer_id} has no stored reply`);
  return { status: row.state === "posted" ? 201 : 409, body: row.response, replayed };
}

/**
 * The truthful answer for a transfer whose debit happened but whose end did not come within the
 * request: 202 with the transfer `pending` (API.md). Never stored: a retry answers the state then.
 */
export function pendingReply(senderId: string, row: TransferOutRow, replayed: boolean): StoredReply {
  invariant(row.state === "pending", `transfer ${row.transfer_id} answered pending while ${row.state}`);
  return { status: 202, body: JSON.stringify(successBody(sentTransfer(senderId, row), 202)), replayed };
}
