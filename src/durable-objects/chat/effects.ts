import type { RealtimeEvent } from "../../schemas/realtime";
import type { ChatSnapshot } from "./chat-types";

/**
 * Everything a chat object reaches outside its own storage, handed in by whoever binds it
 * (src/index.ts for the deployed Worker, services/chat-effects.ts implements it). No chat module
 * imports a service.
 */
export interface ChatEffects {
  /** The chat as the D1 directory knows it (read once, when an object wakes with no chat row); null: no such chat. */
  loadSnapshot(chatId: string): Promise<ChatSnapshot | null>;
  /** Writes the chat's directory summary and the members' markers that moved (one D1 batch; coalesced by the caller). */
  writeSummary(summary: DirectorySummary): Promise<void>;
  /** Pushes frames to users; resolves to the users who turned out to have no open socket. */
  push(userIds: readonly string[], events: readonly RealtimeEvent[]): Promise<string[]>;
}

/** One chat's row in the D1 directory (chats) and the members' own rows (chat_members) whose marker moved. */
export type DirectorySummary = {
  chatId: string;
  lastSeq: number;
  /** The last message as the API shows it (JSON of `Message`), null before the first. */
  lastMessage: string | null;
  lastActivityAt: number;
  markers: { userId: string; lastReadSeq: number }[];
};
