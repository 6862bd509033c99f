import type { Outcome } from "../../lib/errors";
import type { RealtimeEvent } from "../../schemas/realtime";
import type { MemberFact } from "./chat-types";

/**
 * Everything a chat object reaches outside its own storage, handed in by whoever binds it
 * (src/index.ts for the deployed Worker, services/chat-effects.ts implements it). No chat module
 * imports a service.
 */
export interface ChatEffects {
  /**
   * Asks `userId`'s own object to count this chat among the user's (idempotent per chat id);
   * refused with 404 `user_not_found` for an id no registration opened, 403 for the requester's
   * own suspension or the user's block of the requester, 409 `chat_limit_reached` past
   * `MAX_CHATS_PER_USER` or, as `owner`, `MAX_GROUPS_OWNED`.
   * Answers the user's facts as their owner holds them at that moment (status, blocks of
   * `otherIds`, versioned): the chat takes them in with the member, and the owner's outbox, which
   * counts this chat from then on, keeps them current.
   */
  admitMember(userId: string, admission: UserAdmission): Promise<Outcome<MemberFact>>;
  /** Writes the chat's directory row, its membership index and the markers that moved (one D1 batch, forward only). */
  writeSummary(summary: DirectorySummary): Promise<void>;
  /** Tells each user's own object their current place in this chat (forward only by `version`). */
  tellUsers(chatId: string, links: readonly UserLink[]): Promise<void>;
  /** Pushes frames to users; resolves to the users who turned out to have no open socket. */
  push(userIds: readonly string[], events: readonly RealtimeEvent[]): Promise<string[]>;
}

/** A join asked of the user's object: `limits: null` (a transfer's direct chat) is counted but never refused for caps. */
export type UserAdmission = {
  chatId: string;
  /** The user being admitted (named in a refusal). */
  userId: string;
  role: "owner" | "member";
  /**
   * Who asks to put the user in: the creator of a chat or the owner adding a member. The user's
   * object refuses its own suspended requester (403 `account_suspended`) and a requester the user
   * blocked (403 `recipient_blocked`). Null for a transfer's chat (its credits moved already).
   */
  requesterId: string | null;
  /** The chat's other members whose block by this user the chat must know (a direct chat's other member; none for a group). */
  otherIds: string[];
  limits: { maxChatsPerUser: number; maxGroupsOwned: number } | null;
};

/** A user's place in a chat at the chat's membership version: `role: null` once they are gone. */
export type UserLink = { userId: string; role: "owner" | "member" | null; version: number };

/** A member's row in the directory's membership index at the chat's membership version (`role: null`: gone). */
export type IndexRow = { userId: string; role: "owner" | "member" | null; joinedAt: number; lastReadSeq: number };

/** One chat's row in the D1 directory (chats), its membership index (chat_members) and the markers that moved. */
export type DirectorySummary = {
  chatId: string;
  /** The chat's identity, for the row's first write (the chat is created in its object first). */
  identity: {
    type: "direct" | "group";
    title: string | null;
    directKey: string | null;
    createdBy: string;
    createdAt: number;
    routeTag: string;
  };
  lastSeq: number;
  /** The last message as the API shows it (JSON of `Message`), null before the first. */
  lastMessage: string | null;
  lastActivityAt: number;
  /** Whether a credit transfer's message is in this chat (reconciliation walks these chats). */
  carriesTransfers: boolean;
  markers: { userId: string; lastReadSeq: number }[];
  /** The membership version these rows are at, the member count then, and the rows changed since the last acknowledged one. */
  index: { version: number; memberCount: number; rows: IndexRow[] } | null;
};
