import { eq, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { log } from "../../lib/log";
import { toMessage } from "../../schemas/message";
import type { Log } from "./append";
import { chatRow, type chatSchema } from "./chat-schema";
import type { ChatEffects, DirectorySummary } from "./effects";
import type { Members } from "./members";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/**
 * How long a change waits before the directory hears of it: every change in that time goes in
 * one D1 write (API.md: the chat list reflects a committed message within 1 s).
 */
export const SUMMARY_FLUSH_MS = 250;
/** After a failed write the directory is tried again this much later, doubling up to the cap. */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;

/**
 * The chat's row in the D1 directory (last seq, last message, activity) and the members' own
 * markers there, written behind the answers, coalesced: at most one D1 batch per chat per
 * SUMMARY_FLUSH_MS however many sends, never one row per member per message. What was written is
 * recorded (`flushed_*`), so what is still owed survives a restart and the alarm writes it.
 */
export class Summary {
  private retryMs = RETRY_FIRST_MS;

  constructor(
    private readonly db: Db,
    private readonly log: Log,
    private readonly members: Members,
    private readonly effects: Pick<ChatEffects, "writeSummary">,
  ) {}

  /** A change the list shows that is not the seq (an edit or delete of the last message). */
  touch(): void {
    this.db
      .update(chatRow)
      .set({ summaryVersion: sql`${chatRow.summaryVersion} + 1` })
      .where(eq(chatRow.id, 1))
      .run();
  }

  /** What the directory still lacks, or null when it is current. */
  owed(): DirectorySummary | null {
    const meta = this.log.meta();
    if (!meta) return null;
    const markers = this.members.unflushedMarkers();
    if (meta.flushedSeq === meta.lastSeq && meta.flushedVersion === meta.summaryVersion && markers.length === 0) return null;
    const last = meta.lastSeq > 0 ? this.log.bySeq(meta.lastSeq) : undefined;
    return {
      chatId: meta.chatId,
      lastSeq: meta.lastSeq,
      // A last message still in D1 (not migrated yet) is already the directory's.
      lastMessage: last ? JSON.stringify(toMessage({ ...last, chatId: meta.chatId })) : null,
      lastActivityAt: meta.lastActivityAt,
      markers,
    };
  }

  /**
   * Writes what is owed. Returns when to try again: null when the directory is current, later
   * (backing off) when D1 failed, soon when more changed during the write.
   */
  async flush(now: number): Promise<number | null> {
    const summary = this.owed();
    if (!summary) return null;
    const version = this.log.meta()?.summaryVersion ?? 0;
    try {
      await this.effects.writeSummary(summary);
    } catch (error) {
      log.warn("chat.summary_failed", { chatId: summary.chatId, error });
      const at = now + this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      return at;
    }
    this.retryMs = RETRY_FIRST_MS;
    this.db
      .update(chatRow)
      .set({
        flushedSeq: sql`max(${chatRow.flushedSeq}, ${summary.lastSeq})`,
        flushedVersion: sql`max(${chatRow.flushedVersion}, ${version})`,
      })
      .where(eq(chatRow.id, 1))
      .run();
    this.members.markersFlushed(summary.markers);
    return this.owed() ? now + SUMMARY_FLUSH_MS : null;
  }
}
