import type { Message } from "../../schemas/message";
import type { ChatFact } from "../chat/chat-types";
import type { IndexEntry, PeerFact } from "./account";
import type { CreditCommand, CreditResult, FaultPoint, TransferCommand, TransferEvent } from "./wallet-types";

/**
 * Everything the money protocol needs from outside its own storage, handed to the wallet object by
 * whoever binds it (src/bindings/wallet.ts for the deployed Worker, test/support for the suites).
 * No wallet module imports a service: the direct chat, the transfer's message and the realtime
 * frames are the chat and realtime modules' business, reached only through this.
 */
export interface WalletEffects {
  /** The pair's direct chat, created if missing. Called only after a credit, so a void never creates one. */
  directChat(senderId: string, recipientId: string, at: number): Promise<string>;
  /**
   * The `credit_transfer` messages of credited transfers, keyed by transfer id (a repeat finds the
   * first), all or none, in order. `undefined` where a message was neither inserted nor found.
   */
  postTransferMessages(messages: readonly TransferMessage[]): Promise<(Message | undefined)[]>;
  /** Announces a transfer that just ended (recovery's endings; a request's go back to its caller). */
  announce(event: TransferEvent): void;
  /** The recipient's wallet object. */
  recipient(userId: string): RecipientWallet;
  /** Writes these admin audit rows to the directory's audit log, idempotent by id (a repeat records nothing more). */
  recordAudit(entries: readonly AuditOutboxEntry[]): Promise<void>;
  /** The sender's wallet object of a transfer this wallet received (is its message posted yet?). */
  sender(userId: string): SenderWallet;
  /**
   * The account facts' D1 index (users.status/role, blocks) and the audit rows that go with them,
   * in one batch: each version written only over an older one, so a repeat or a late write is a no-op.
   */
  writeFactsIndex(userId: string, entries: readonly IndexEntry[]): Promise<void>;
  /** The pair's direct chat id, or null when they have none yet. */
  directChatOf(userId: string, otherId: string): Promise<string | null>;
  /** Tells a chat object facts (applied forward only); resolves once it acknowledged them. */
  tellChat(chatId: string, facts: readonly ChatFact[]): Promise<void>;
}

export type SenderWallet = {
  /** The chat of a transfer that wallet sent and posted; null while it is not posted (or not its). */
  postedTransferChat(transferId: string): Promise<string | null>;
};

export type RecipientWallet = {
  credit(command: CreditCommand): Promise<CreditResult>;
  voidUnlessCredited(command: CreditCommand): Promise<CreditResult>;
  /** Whether the recipient exists (no storage created when not) and its block of `senderId`, versioned. */
  admitTransfer(senderId: string): Promise<PeerFact | null>;
  /** Tells this user a peer's block of it changed (the copy its transfers decide on), forward only. */
  applyPeerFact(peerId: string, fact: PeerFact): Promise<void>;
};

/** One row of the admin audit log, as the wallet's outbox keeps it until the log acknowledges it. */
export type AuditOutboxEntry = {
  /** The grant's id; a role change's own id. */
  id: string;
  /** The admin; `operator` for a role change made with `npm run admin`. */
  actorId: string;
  targetId: string;
  /** The admin's request; the operator command's run id. */
  requestId: string;
  /** Epoch ms of the action. */
  createdAt: number;
} & (
  | { action: "grant"; detail: { amount: number; reason: string } }
  | { action: "role_grant" | "role_revoke"; detail: RoleChangeDetail }
);

/** What a role change's audit row says: the role set, the one before, who ran the command and how. */
export type RoleChangeDetail = { role: "user" | "admin"; previousRole: "user" | "admin"; operator: string; via: string };

/** A credited transfer's message, as the chat module appends it. */
export type TransferMessage = {
  transferId: string;
  /** Fixed at the debit (the transfer id). */
  messageId: string;
  chatId: string;
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  /** Epoch ms of the debit. */
  createdAt: number;
};

/**
 * Where a test steps into the protocol. Production passes `PRODUCTION_HOOKS`; the suites pass a
 * double that moves the clock, stops or crashes a transfer after a step, holds groups or makes a
 * credit fail or hang. Each hook runs at the same place on the production path, so a double takes
 * the branch production takes after the same failure.
 */
export interface ProtocolHooks {
  /** The clock of every protocol decision. */
  now(): number;
  /** After each protocol step, per transfer; throwing there stops that transfer as a crash would. */
  reached(point: FaultPoint, transferId: string): void;
  /** Awaited before each group of transfer requests is taken (`waiting` counts them at that moment). */
  beforeGroup(waiting: () => number): Promise<void>;
  /** Awaited before this wallet credits a transfer as its recipient (a throw or a hang is the recipient's). */
  beforeCredit(command: CreditCommand): Promise<void>;
  /** Inside a group's transaction, before each request's step 1 (a throw is that request's failure). */
  beforeBegin(command: TransferCommand): void;
}

export const PRODUCTION_HOOKS: ProtocolHooks = {
  now: () => Date.now(),
  reached: () => {},
  beforeGroup: async () => {},
  beforeCredit: async () => {},
  beforeBegin: () => {},
};
