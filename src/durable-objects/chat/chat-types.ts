import type { Outcome, Refusal } from "../../lib/errors";
import type { Chat, ChatMember } from "../../schemas/chat";
import type { Message } from "../../schemas/message";
import type { RealtimeEvent } from "../../schemas/realtime";

/**
 * What crosses RPC into and out of a ChatDO. Refusals are values (`Outcome`), never thrown
 * custom errors (their fields are lost on the way).
 */

/** A chat as the directory (D1) knows it, handed to a new object or read by it once when it first wakes. */
export type ChatSnapshot = {
  chatId: string;
  type: "direct" | "group";
  title: string | null;
  createdBy: string;
  createdAt: number;
  routeTag: string;
  /** The D1 `last_seq`: messages up to it are legacy (still in D1) until the migration moves them. */
  lastSeq: number;
  lastActivityAt: number;
  members: MemberSnapshot[];
  /**
   * The block state of each ordered pair of members of a direct chat as the directory indexes it,
   * with the blocker's facts version (a pair with no block is a "not blocked" at that version, so
   * an older block still in flight cannot land over it).
   */
  blocks: BlockSnapshot[];
};

export type BlockSnapshot = { blockerId: string; blockedId: string; blocked: boolean; version: number };

export type MemberSnapshot = {
  userId: string;
  role: "owner" | "member";
  joinedAt: number;
  lastReadSeq: number;
  suspended: boolean;
  online: boolean;
  /** The version of the user's facts `suspended` was read at (the owner's: wallet/account.ts); 0 when unknown. */
  factsVersion?: number;
};

/** A keyed send's key: the caller's `Idempotency-Key` and the fingerprint of method, path and body. */
export type SendKey = { key: string; fingerprint: string };

export type SendCommand = {
  chatId: string;
  senderId: string;
  content: string;
  replyToMessageId: string | null;
  clientMessageId: string | null;
  key: SendKey | null;
  /** Set when the Worker already refused the request (a rate limit): answered unless the key has a stored outcome. */
  refusal: Refusal | null;
};

/**
 * A send's answer: `stored` is the exact response (status and body) the Worker returns, the same
 * bytes a replay of its key answers later; `replayed` when it is such a replay.
 */
export type SendAnswer = { status: 200 | 201; body: string; replayed: boolean; message: Message | null };

export type SendResult = Outcome<SendAnswer>;

/** A credited transfer's message (the wallet's TransferMessage, minus what the object knows). */
export type TransferAppend = {
  transferId: string;
  messageId: string;
  senderId: string;
  recipientId: string;
  amount: number;
  note: string | null;
  createdAt: number;
};

export type PageRequest = {
  userId: string;
  chatId: string;
  order: "asc" | "desc";
  /** desc: messages below it (null: the newest); asc: messages above it. */
  seq: number | null;
  take: number;
};

export type MarkerAnswer = { chatId: string; lastReadSeq: number; unreadCount: number };

export type ChatView = Chat;

export type MemberChange =
  | { kind: "add"; member: MemberSnapshot; actorId: string; content: string; at: number }
  | { kind: "remove"; userId: string; actorId: string; content: string; newOwnerId: string | null; at: number };

/**
 * A fact about the outside world a chat holds a copy of, delivered by its owner's outbox (the
 * user's object: wallet/facts-outbox.ts), stamped with the owner's version and applied forward
 * only: an older version never overwrites a newer one, whatever order deliveries arrive in.
 */
export type ChatFact =
  | { kind: "suspended"; userId: string; suspended: boolean; version: number }
  | { kind: "block"; blockerId: string; blockedId: string; blocked: boolean; version: number };

/** Frames to push after a change, to the members the object believes have a socket. */
export type Push = { userIds: string[]; events: RealtimeEvent[] };

/** Reconciliation's view of this chat's transfer messages (transfer-reads.ts). */
export type ChatTransferTotals = {
  chatId: string;
  senders: TransferTotal[];
  /** Legacy messages still in D1 (null: none), and the transfer ids of that band already here. */
  legacy: (LegacyBand & { here: string[] }) | null;
};

export type TransferTotal = { senderId: string; count: number; amount: number };

/** The seqs of a chat's legacy messages not moved into its object yet (they are in D1). */
export type LegacyBand = { fromSeq: number; toSeq: number };

/** A `credit_transfer` message as reconciliation reads it. */
export type ChatTransferMessage = {
  id: string;
  transferId: string;
  senderId: string;
  recipientId: string | null;
  amount: number | null;
};

export type ChatTransferMessages = { chatId: string; messages: ChatTransferMessage[]; legacy: LegacyBand | null };

/** A member's transfer messages, sent by it or by the others, with transfer id in (afterId, before). */
export type TransferMessagePage = {
  userId: string;
  side: "sent" | "received";
  afterId: string;
  before: string;
  limit: number;
};

export type { ChatMember, Message };

// ------------------------------------------------------------------ the migration from D1 (legacy.ts)

/** A member's read marker as the D1 directory has it (moved forward into the object, never back). */
export type LegacyMarker = { userId: string; lastReadSeq: number };

/** How far a chat's D1 history has moved in: seqs 1..legacyUpTo are legacy, 1..importedUpTo are here. */
export type LegacyProgress = { legacyUpTo: number; importedUpTo: number; markersMoved: number };

/**
 * A message-send key of the old design (a D1 `idempotency_keys` row with its message): its stored
 * outcome, or null when the request died before storing it (then the answer is 201 with the message).
 */
export type LegacySendKey = {
  userId: string;
  key: string;
  fingerprint: string;
  status: number | null;
  body: string | null;
  messageId: string;
  createdAt: number;
};
