import { eq, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { log } from "../../lib/log";
import { toMessage } from "../../schemas/message";
import type { Log } from "./append";
import { chatRow, type chatSchema, members } from "./chat-schema";
import type { ChatEffects, DirectorySummary, UserLink } from "./effects";
import type { Members } from "./members";
import type { Roster } from "./roster";
import type { TransferReads } from "./transfer-reads";

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
 * The chat's outbox: its row in the D1 directory (identity, last seq, last message, activity),
 * the membership index (`chat_members`) and the members' own markers there, and each changed
 * member's place told to that user's own object (their chat count: `chat_limit_reached`). Written
 * behind the answers, coalesced: at most one D1 batch per chat per SUMMARY_FLUSH_MS however many
 * sends, never one row per member per message. What was acknowledged is recorded (`flushed_*`),
 * so what is still owed survives a restart, and the alarm retries it with back-off until it is
 * acknowledged: there is no last attempt. Every copy is stamped (seq, markers, the membership
 * version) and applied forward only, so a write delayed in flight never undoes a newer one.
 */
export class Summary {
  private retryMs = RETRY_FIRST_MS;
  /** The flush in progress: flushes run one after another, each sending what is owed when it starts. */
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly log: Log,
    private readonly members: Members,
    private readonly roster: Roster,
    private readonly transfers: TransferReads,
    private readonly effects: Pick<ChatEffects, "writeSummary" | "tellUsers">,
  ) {}

  /** A change the list shows that is not the seq (an edit or delete of the last message). */
  touch(): void {
    this.db
      .update(chatRow)
      .set({ summaryVersion: sql`${chatRow.summaryVersion} + 1` })
      .where(eq(chatRow.id, 1))
      .run();
  }

  /**
   * What the directory and the users' objects still lack: the directory's part (null when it is
   * current) and the users' places changed since they were last told (with the version they are at).
   */
  owed(): { summary: DirectorySummary | null; links: UserLink[]; linksVersion: number } | null {
    const meta = this.log.meta();
    if (!meta) return null;
    const markers = this.members.unflushedMarkers();
    const indexOwed = meta.indexVersion > meta.flushedIndexVersion;
    const usersOwed = meta.indexVersion > meta.toldIndexVersion;
    const current = meta.flushedSeq === meta.lastSeq && meta.flushedVersion === meta.summaryVersion;
    const links = usersOwed ? this.roster.changedSince(meta.toldIndexVersion).links : [];
    if (current && markers.length === 0 && !indexOwed) {
      return usersOwed ? { summary: null, links, linksVersion: meta.indexVersion } : null;
    }
    const last = meta.lastSeq > 0 ? this.log.bySeq(meta.lastSeq) : undefined;
    const changed = indexOwed ? this.roster.changedSince(meta.flushedIndexVersion).index : [];
    const memberCount = this.db.select({ n: sql<number>`count(*)` }).from(members).get()?.n ?? 0;
    const summary: DirectorySummary = {
      chatId: meta.chatId,
      identity: {
        type: meta.type,
        title: meta.title,
        // A direct chat's pair, as the directory has always named it (its id is derived from it too).
        // Read only with a membership change owed: the row is first written with one, and never changes after.
        directKey:
          meta.type === "direct" && indexOwed
            ? this.members
                .all()
                .map((m) => m.userId)
                .sort()
                .join(":")
            : null,
        createdBy: meta.createdBy,
        createdAt: meta.createdAt,
        routeTag: meta.routeTag,
      },
      lastSeq: meta.lastSeq,
      lastMessage: last ? JSON.stringify(toMessage({ ...last, chatId: meta.chatId })) : null,
      lastActivityAt: meta.lastActivityAt,
      carriesTransfers: this.transfers.carries(),
      markers,
      index: indexOwed ? { version: meta.indexVersion, memberCount, rows: changed } : null,
    };
    return { summary, links, linksVersion: meta.indexVersion };
  }

  /**
   * Writes what is owed (`usersToo`: the users' objects as well; a request flushing its own
   * change leaves them to the alarm). Returns when to try again: null when everything is current,
   * later (backing off, without end) when D1 or a user's object failed, soon when more is owed.
   */
  flush(now: number, usersToo = true): Promise<number | null> {
    const run = this.running.then(() => this.flushOnce(now, usersToo));
    this.running = run.catch(() => undefined);
    return run;
  }

  private async flushOnce(now: number, usersToo: boolean): Promise<number | null> {
    const owed = this.owed();
    if (!owed) return null;
    const { summary, links, linksVersion } = owed;
    try {
      if (summary) await this.writeDirectory(summary);
      if (usersToo && links.length > 0) {
        await this.effects.tellUsers(this.log.meta()?.chatId ?? "", links);
        this.db
          .update(chatRow)
          .set({ toldIndexVersion: sql`max(${chatRow.toldIndexVersion}, ${linksVersion})` })
          .where(eq(chatRow.id, 1))
          .run();
      }
    } catch (error) {
      log.warn("chat.summary_failed", { chatId: this.log.meta()?.chatId, error });
      const at = now + this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      return at;
    }
    this.retryMs = RETRY_FIRST_MS;
    return this.owed() ? now + SUMMARY_FLUSH_MS : null;
  }

  /** The directory's part, then what it acknowledged recorded. */
  private async writeDirectory(summary: DirectorySummary): Promise<void> {
    const version = this.log.meta()?.summaryVersion ?? 0;
    await this.effects.writeSummary(summary);
    this.db
      .update(chatRow)
      .set({
        flushedSeq: sql`max(${chatRow.flushedSeq}, ${summary.lastSeq})`,
        flushedVersion: sql`max(${chatRow.flushedVersion}, ${version})`,
        flushedIndexVersion: sql`max(${chatRow.flushedIndexVersion}, ${summary.index?.version ?? 0})`,
      })
      .where(eq(chatRow.id, 1))
      .run();
    this.members.markersFlushed(summary.markers);
  }
}
