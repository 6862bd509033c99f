import type { Outcome, Refusal } from "../../lib/errors";
import type { RateLimitDecision } from "../../lib/sliding-window";
import type { Chat, ChatMember } from "../../schemas/chat";
import type { Message } from "../../schemas/message";
import type { RealtimeEvent } from "../../schemas/realtime";

/**
 * What crosses RPC into and out of a ChatDO. Refusals are values (`Outcome`), never thrown
 * custom errors (their fields are lost on the way).
 */

/**
 * What the outside world says of a user when the chat takes them in: their status at their
 * owner's facts version (wallet/account.ts), and the block state of each ordered pair of the new
 * members (a direct chat), stamped with the blocker's version, so an older fact still in flight
 * cannot land over it. The owners' outboxes keep these current afterwards.
 */
export type MemberFacts = {
  suspended: Record<string, boolean>;
  online: Record<string, boolean>;
  versions: Record<string, number>;
  blocks: BlockSnapshot[];
};

/**
 * One user's facts as their own object answers them when it admits the user to a chat: whether
 * they are suspended and which of the chat's other members they blocked, at their facts version.
 */
export type MemberFact = { suspended: boolean; version: number; blockedIds: string[] };

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

/** The per-user caps a join is checked against (API.md: `chat_limit_reached`), and the group's own. */
export type MemberLimits = { maxMembers: number; maxChatsPerUser: number; maxGroupsOwned: number };

/**
 * A chat to create (chat-first: the directory and the users' objects follow from its outbox).
 * A direct chat's id is derived from its pair (lib/direct-chat.ts), so creating it twice finds the
 * first; `limits: null` lets a transfer's chat in whatever the caps (credits already moved).
 */
export type NewChat = {
  chatId: string;
  type: "direct" | "group";
  title: string | null;
  createdBy: string;
  /** The creator first (a group's owner), then the others in the order given. */
  memberIds: string[];
  routeTag: string;
  at: number;
  /** The caps the members are counted against; null for a transfer's chat (counted, never refused). */
  limits: MemberLimits | null;
  /** Who asks for the chat (their status and the others' blocks of them are checked); null for a transfer's chat. */
  requesterId: string | null;
};

export type CreatedChat = { chat: Chat; created: boolean };

/**
 * An owner adds `userId`. What the directory says of the user (the Worker read it: whether the
 * account exists, whether they blocked the owner) is checked here after the owner's own checks,
 * so the order of refusals is the chat's; `content` is the system message.
 */
export type AddMember = {
  chatId: string;
  actorId: string;
  userId: string;
  content: string;
  at: number;
  limits: MemberLimits;
};

/** The owner removes `userId`, or `userId` leaves (actor = user); the system message names both. */
export type RemoveMember = {
  chatId: string;
  actorId: string;
  userId: string;
  names: { actor: string; user: string };
  at: number;
};

export type RemovedMember = { chatId: string; userId: string; ownerId: string | null };

/** A keyed send's key: the caller's `Idempotency-Key` and the fingerprint of method, path and body. */
export type SendKey = { key: string; fingerprint: string };

export type SendCommand = {
  chatId: string;
  senderId: string;
  content: string;
  replyToMessageId: string | null;
  clientMessageId: string | null;
  key: SendKey | null;
  /** Sends per minute per sender in this chat (API.md §1, `RATE_LIMIT_MESSAGES_PER_MINUTE`), counted after the key lookup. */
  ratePerMinute: number;
};

/**
 * A send's answer: `stored` is the exact response (status and body) the Worker returns, the same
 * bytes a replay of its key answers later; `replayed` when it is such a replay.
 */
export type SendAnswer = {
  status: 200 | 201;
  body: string;
  replayed: boolean;
  message: Message | null;
  /** The per-chat limit's decision for a counted send (null: a replay, never counted). */
  rateLimit: RateLimitDecision | null;
};

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
  /**
   * Always null now: every chat holds its whole history (no deployment ever held D1 history). The
   * field stays in the shape until reconciliation's reading of it goes (its legacy branches).
   */
  legacy: (LegacyBand & { here: string[] }) | null;
};

/** A band of a chat's history outside its object: none exists any more (see `ChatTransferTotals.legacy`). */
export type LegacyBand = { fromSeq: number; toSeq: number };

export type TransferTotal = { senderId: string; count: number; amount: number };

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
