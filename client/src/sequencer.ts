import type { Message } from "./types.js";

/** Messages of one chat after `afterSeq`, oldest first (one page of `GET …/chat/{chatId}?afterSeq=`). */
export type FetchAfter = (chatId: string, afterSeq: number) => Promise<{ items: Message[]; nextCursor: string | null }>;

type ChatState = { delivered: number; early: Map<number, Message>; filling: Promise<void> | null; again: boolean };

/**
 * Turns at-most-once socket frames into exactly-once, in-order delivery per chat. `seq` has no
 * gaps, so whatever arrives above `delivered + 1` is held back and the missing range fetched with
 * `afterSeq`; whatever is at or below `delivered` was already delivered and is dropped.
 */
export class ChatSequencer {
  private readonly chats = new Map<string, ChatState>();

  constructor(
    private readonly fetchAfter: FetchAfter,
    private readonly deliver: (message: Message) => void,
    private readonly onError: (chatId: string, error: unknown) => void = () => {},
  ) {}

  /** Start (or keep) delivering a chat's messages after `afterSeq`; returns once caught up. */
  watch(chatId: string, afterSeq = 0): Promise<void> {
    if (!this.chats.has(chatId)) this.chats.set(chatId, { delivered: afterSeq, early: new Map(), filling: null, again: false });
    return this.catchUp(chatId);
  }

  unwatch(chatId: string): void {
    this.chats.delete(chatId);
  }

  isWatching(chatId: string): boolean {
    return this.chats.has(chatId);
  }

  /** The last seq delivered for the chat (what a reconnect catches up after). */
  lastDelivered(chatId: string): number | undefined {
    return this.chats.get(chatId)?.delivered;
  }

  watched(): string[] {
    return [...this.chats.keys()];
  }

  /** A message from a frame (or a page): delivered now, held until its predecessors arrive, or dropped as a repeat. */
  accept(message: Message): void {
    const state = this.chats.get(message.chatId);
    if (!state || message.seq <= state.delivered) return;
    state.early.set(message.seq, message);
    this.drain(state);
    if (state.early.size > 0) void this.catchUp(message.chatId);
  }

  /** Everything committed after the last delivered seq, page by page (after every (re)connect, and to fill a gap). */
  catchUp(chatId: string): Promise<void> {
    const state = this.chats.get(chatId);
    if (!state) return Promise.resolve();
    if (state.filling) {
      // A fetch is already running; it may have started before the frame that revealed this gap, so run once more after it.
      state.again = true;
      return state.filling;
    }
    state.filling = this.fill(chatId, state).finally(() => {
      state.filling = null;
    });
    return state.filling;
  }

  private async fill(chatId: string, state: ChatState): Promise<void> {
    do {
      state.again = false;
      try {
        for (;;) {
          const before = state.delivered;
          const page = await this.fetchAfter(chatId, before);
          for (const message of page.items) this.accept(message);
          // No progress (an empty page, or the chat was unwatched meanwhile) ends the pass instead of spinning.
          if (page.nextCursor === null || state.delivered === before) break;
        }
      } catch (error) {
        // The next frame or reconnect tries again; nothing delivered is lost meanwhile.
        this.onError(chatId, error);
        return;
      }
    } while (state.again && this.chats.get(chatId) === state);
  }

  private drain(state: ChatState): void {
    for (let next = state.early.get(state.delivered + 1); next; next = state.early.get(state.delivered + 1)) {
      state.early.delete(next.seq);
      state.delivered = next.seq;
      this.deliver(next);
    }
  }
}
