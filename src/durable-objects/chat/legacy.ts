import { eq, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { invariant } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import type { Log } from "./append";
import { type ChatMessageRow, type ChatMeta, chatRow, type chatSchema, messages, type SendKeyRow } from "./chat-schema";
import type { ChatSnapshot, LegacyMarker, LegacySendKey } from "./chat-types";
import type { ChatEffects } from "./effects";
import type { Members } from "./members";
import { messageOf, sendBody } from "./posting";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/**
 * A chat's beginning: the chat row and members from a snapshot of the D1 directory, and the
 * messages an existing deployment wrote to D1 before chat objects (seq 1..legacy_up_to), read from
 * D1 until the migration Workflow moves them here (workflows/chat-migration-workflow.ts), while
 * the API keeps answering.
 */
export class Legacy {
  constructor(
    private readonly db: Db,
    private readonly log: Log,
    private readonly members: Members,
    private readonly effects: Pick<ChatEffects, "legacyMessages" | "legacyMessage">,
  ) {}

  /** Creates the chat from `snapshot` unless it exists (concurrent first calls write it once). */
  begin(snapshot: ChatSnapshot): ChatMeta {
    const existing = this.log.meta();
    if (existing) return existing;
    this.db
      .insert(chatRow)
      .values({
        id: 1,
        chatId: snapshot.chatId,
        type: snapshot.type,
        title: snapshot.title,
        createdBy: snapshot.createdBy,
        createdAt: snapshot.createdAt,
        routeTag: snapshot.routeTag,
        lastSeq: snapshot.lastSeq,
        lastActivityAt: snapshot.lastActivityAt,
        legacyUpTo: snapshot.lastSeq,
        importedUpTo: 0,
        flushedSeq: snapshot.lastSeq,
        summaryVersion: 0,
        flushedVersion: 0,
      })
      .run();
    for (const member of snapshot.members) this.members.insert(member);
    for (const block of snapshot.blocks) this.members.apply({ kind: "block", ...block });
    const meta = this.log.meta();
    invariant(meta?.chatId === snapshot.chatId, `chat ${snapshot.chatId} was not created`);
    return meta;
  }

  /** The legacy seqs not moved yet: [from, to], or null when everything is here. */
  private band(meta: ChatMeta): [number, number] | null {
    return meta.importedUpTo < meta.legacyUpTo ? [meta.importedUpTo + 1, meta.legacyUpTo] : null;
  }

  /** Messages with seq in [from, to] ascending, from here and, for the legacy band, from D1. */
  async range(meta: ChatMeta, from: number, to: number): Promise<ChatMessageRow[]> {
    const local = this.log.range(from, to);
    const band = this.band(meta);
    if (!band || band[1] < from || band[0] > to) return local;
    const have = new Set(local.map((row) => row.seq));
    const legacy = await this.effects.legacyMessages(meta.chatId, Math.max(from, band[0]), Math.min(to, band[1]));
    return [...local, ...legacy.filter((row) => !have.has(row.seq))].sort((a, b) => a.seq - b.seq);
  }

  /**
   * A message by id; one still in D1 is moved here first (an edit or delete must change the copy
   * that stays), which the migration's later import then leaves alone.
   */
  async byId(meta: ChatMeta, messageId: string): Promise<ChatMessageRow | undefined> {
    const here = this.log.byId(messageId);
    if (here || !this.band(meta)) return here;
    const legacy = await this.effects.legacyMessage(meta.chatId, messageId);
    if (!legacy) return undefined;
    this.log.importRows([legacy]);
    return this.log.byId(messageId);
  }

  /**
   * Stores a page of legacy messages moved from D1 (seq `from`..`to`, all of them), and advances
   * the imported mark when the page continues it. Idempotent: a page moved twice changes nothing.
   */
  importPage(from: number, to: number, rows: readonly ChatMessageRow[]): { importedUpTo: number; inserted: number } {
    const meta = this.log.meta();
    invariant(meta, "import into a chat that does not exist");
    invariant(
      rows.every((row) => row.seq >= from && row.seq <= to && row.seq <= meta.legacyUpTo),
      "an imported row outside its page",
    );
    const inserted = this.log.importRows(rows);
    const present = this.db
      .select({ n: sql<number>`count(*)` })
      .from(messages)
      .where(sql`${messages.seq} BETWEEN ${from} AND ${to}`)
      .get()?.n;
    let importedUpTo = meta.importedUpTo;
    if (from <= importedUpTo + 1 && to > importedUpTo && present === to - from + 1) {
      importedUpTo = Math.min(to, meta.legacyUpTo);
      this.db.update(chatRow).set({ importedUpTo }).where(eq(chatRow.id, 1)).run();
    }
    return { importedUpTo, inserted };
  }

  /** Moves the directory's markers forward into this chat (the migration); returns how many moved. */
  importMarkers(markers: readonly LegacyMarker[]): number {
    const meta = this.log.meta();
    invariant(meta, "markers for a chat that does not exist");
    return markers.filter((marker) => this.members.importMarker(marker, meta.lastSeq)).length;
  }

  /**
   * The send keys of the old design as this chat stores them, each with its exact answer: the
   * stored one, or, for a request that died before storing it, 201 with its message (what the old
   * design answered a retry). Keys past retention answer nothing any more and are left out, as are
   * keys whose message is not this chat's.
   */
  async sendKeyRows(meta: ChatMeta, keys: readonly LegacySendKey[], now: number): Promise<SendKeyRow[]> {
    const rows: SendKeyRow[] = [];
    for (const key of keys) {
      if (key.createdAt < now - IDEMPOTENCY_RETENTION_MS) continue;
      const status = key.status ?? 201;
      let body = key.body;
      if (body === null) {
        // Read, not moved: the message moves with its page (and is counted there).
        const message = this.log.byId(key.messageId) ?? (await this.effects.legacyMessage(meta.chatId, key.messageId));
        if (!message) continue;
        body = sendBody(messageOf(meta, message), status === 200 ? 200 : 201);
      }
      const { userId, fingerprint, messageId, createdAt } = key;
      rows.push({ userId, key: key.key, fingerprint, status, body, messageId, createdAt });
    }
    return rows;
  }
}
