import { DurableObject } from "cloudflare:workers";
import { drizzle } from "drizzle-orm/durable-sqlite";
import { type Outcome, refuse } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { log } from "../../lib/log";
import type { Chat } from "../../schemas/chat";
import type { Message } from "../../schemas/message";
import type { RealtimeEvent } from "../../schemas/realtime";
import { Log } from "./append";
import { type ChatMessageRow, type ChatMeta, chatSchema, migrate } from "./chat-schema";
import type {
  ChatFact,
  ChatTransferMessages,
  ChatTransferTotals,
  LegacyMarker,
  LegacyProgress,
  LegacySendKey,
  MarkerAnswer,
  MemberChange,
  PageRequest,
  SendCommand,
  SendResult,
  TransferAppend,
  TransferMessagePage,
} from "./chat-types";
import type { ChatEffects } from "./effects";
import { SendKeys } from "./keys";
import { Legacy } from "./legacy";
import { chatNotFound, Members, toChatMember } from "./members";
import { messageOf, Posting } from "./posting";
import { SUMMARY_FLUSH_MS, Summary } from "./summary";
import { TransferReads } from "./transfer-reads";

/** What the binding hands the chat: its effects on the outside world, and (tests only) a clock. */
export type ChatWiring = { effects: ChatEffects; now?: () => number };

/**
 * One chat (`idFromName(chatId)`), SQLite-backed: a thin RPC shell over modules with one job each.
 *
 *   append.ts   the log: seq, message ids, the only writer of messages and transfer totals
 *   members.ts  who may read and send, markers, versioned copies of suspension and blocks
 *   posting.ts  the rules of a send, a transfer's message, an edit, a marker, a member change
 *   keys.ts     stored outcomes of keyed sends     summary.ts  the D1 directory row, coalesced
 *   legacy.ts   the chat's beginning, and history an existing deployment still has in D1
 *   transfer-reads.ts   what reconciliation reads of the transfer messages
 *
 * Every write runs in one `transactionSync` with the checks that allowed it, so a send is one
 * durable write and its answer; the directory, realtime frames and key expiry follow behind.
 */
export class ChatObject extends DurableObject<Env> {
  private readonly log: Log;
  private readonly members: Members;
  private readonly keys: SendKeys;
  private readonly posting: Posting;
  private readonly legacy: Legacy;
  private readonly summary: Summary;
  private readonly transfers: TransferReads;
  private readonly effects: ChatEffects;
  private readonly now: () => number;
  private alarmAt: number | null = null;
  /**
   * Whether this object holds a chat's schema. An object is created by any call naming it (a
   * random chat id in a URL, say); it writes nothing until the directory confirms the chat, so
   * such calls leave no storage behind.
   */
  private hasSchema: boolean;
  /** The first snapshot being read (one at a time): every call that arrives meanwhile waits for it. */
  private loading: Promise<ChatMeta | null> | null = null;

  constructor(ctx: DurableObjectState, env: Env, wiring: ChatWiring) {
    super(ctx, env);
    const db = drizzle(ctx.storage, { schema: chatSchema });
    this.effects = wiring.effects;
    this.now = wiring.now ?? Date.now;
    this.members = new Members(db);
    this.log = new Log(db, this.members);
    this.keys = new SendKeys(db);
    this.posting = new Posting(this.log, this.members, this.keys);
    this.legacy = new Legacy(db, this.log, this.members, this.effects);
    this.summary = new Summary(db, this.log, this.members, this.effects);
    this.transfers = new TransferReads(db);
    this.hasSchema = schemaExists(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      if (this.hasSchema) migrate(ctx.storage);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // ------------------------------------------------------------------ beginning

  /** The chat, created from the directory on the first call of an object that has none; null: not this chat. */
  private async meta(chatId: string): Promise<ChatMeta | null> {
    const meta = this.storedMeta();
    if (meta) return meta.chatId === chatId ? meta : null;
    this.loading ??= this.load(chatId).finally(() => {
      this.loading = null;
    });
    const loaded = await this.loading;
    return loaded?.chatId === chatId ? loaded : null;
  }

  private async load(chatId: string): Promise<ChatMeta | null> {
    const snapshot = await this.effects.loadSnapshot(chatId);
    if (!snapshot) return null;
    return this.ctx.storage.transactionSync(() => {
      migrate(this.ctx.storage);
      this.hasSchema = true;
      return this.legacy.begin(snapshot);
    });
  }

  private storedMeta(): ChatMeta | undefined {
    return this.hasSchema ? this.log.meta() : undefined;
  }

  // ------------------------------------------------------------------ writes

  async send(cmd: SendCommand): Promise<SendResult> {
    const meta = await this.meta(cmd.chatId);
    if (!meta) return cmd.refusal ?? chatNotFound(cmd.chatId);
    // A reply to a message still in D1 moves it here first, so the check below sees it.
    if (cmd.replyToMessageId !== null) await this.legacy.byId(meta, cmd.replyToMessageId);
    if (cmd.key) await this.adoptLegacyKey(meta, cmd.senderId, cmd.key.key);
    const result = this.ctx.storage.transactionSync(() => this.posting.send(this.current(), cmd, this.now()));
    if (result.ok && result.value.status === 201 && !result.value.replayed && result.value.message) {
      this.changed([{ type: "message.created", data: result.value.message }]);
    }
    return result;
  }

  /** Credited transfers' messages (the wallet's effects), keyed by transfer id; pushed by the transfer's announcement. */
  async appendTransfers(chatId: string, transfers: readonly TransferAppend[]): Promise<Outcome<Message[]>> {
    const meta = await this.meta(chatId);
    if (!meta) return chatNotFound(chatId);
    const posted = this.ctx.storage.transactionSync(() => this.posting.appendTransfers(this.current(), transfers));
    if (posted.some((p) => p.created)) this.changed([]);
    return { ok: true, value: posted.map((p) => p.message) };
  }

  async edit(chatId: string, userId: string, messageId: string, content: string): Promise<Outcome<Message>> {
    return this.rewrite(chatId, userId, messageId, (row) => {
      const suspended = this.members.get(userId)?.suspended;
      if (suspended) return refuse("account_suspended", "This account is suspended: it can sign in and read, but not send");
      return { ok: true, value: this.log.update(row.id, { content, editedAt: this.now() }) };
    });
  }

  async remove(chatId: string, userId: string, messageId: string): Promise<Outcome<Message>> {
    return this.rewrite(chatId, userId, messageId, (row) => ({
      ok: true,
      value: this.log.update(row.id, { content: null, deletedAt: this.now() }),
    }));
  }

  /** An edit or delete: the checks of `Posting.editable`, then `write`, in one transaction; pushed as message.updated/deleted. */
  private async rewrite(
    chatId: string,
    userId: string,
    messageId: string,
    write: (row: ChatMessageRow) => Outcome<ChatMessageRow>,
  ): Promise<Outcome<Message>> {
    const meta = await this.meta(chatId);
    if (!meta) return refuse("message_not_found", `No message ${messageId} in your chats`);
    await this.legacy.byId(meta, messageId);
    const result = this.ctx.storage.transactionSync((): Outcome<Message> => {
      const current = this.current();
      const row = this.posting.editable(current, userId, this.log.byId(messageId));
      if (!row.ok) return row;
      const written = write(row.value);
      if (!written.ok) return written;
      if (written.value.seq === current.lastSeq) this.summary.touch();
      return { ok: true, value: messageOf(current, written.value) };
    });
    if (result.ok) {
      const type = result.value.deletedAt === null ? "message.updated" : "message.deleted";
      this.changed([{ type, data: result.value }]);
    }
    return result;
  }

  async markRead(chatId: string, userId: string, seq: number): Promise<Outcome<MarkerAnswer>> {
    const meta = await this.meta(chatId);
    if (!meta) return chatNotFound(chatId);
    const result = this.ctx.storage.transactionSync(() => this.posting.markRead(this.current(), userId, seq));
    if (!result.ok) return result;
    const { moved, ...marker } = result.value;
    if (moved) this.changed([{ type: "chat.read", data: { chatId, userId, lastReadSeq: marker.lastReadSeq } }]);
    return { ok: true, value: marker };
  }

  /** A membership change the directory made; the system message it posts (null on a repeat), and `notify` extra users. */
  async changeMembers(chatId: string, change: MemberChange): Promise<Outcome<Message | null>> {
    const meta = await this.meta(chatId);
    if (!meta) return chatNotFound(chatId);
    const row = this.ctx.storage.transactionSync(() => this.posting.changeMembers(this.current(), change));
    if (!row) return { ok: true, value: null };
    const message = messageOf(meta, row);
    this.changed([{ type: "message.created", data: message }], change.kind === "remove" ? [change.userId] : []);
    return { ok: true, value: message };
  }

  /**
   * Facts delivered by their owner's outbox (wallet/facts-outbox.ts), applied forward only. A
   * chat that has not started yet starts first (its snapshot), and a fact that arrives while it
   * loads waits for the load: nothing is dropped. Resolving is the acknowledgement.
   */
  async applyFacts(chatId: string, facts: readonly ChatFact[]): Promise<void> {
    const meta = await this.meta(chatId);
    if (!meta) return;
    this.ctx.storage.transactionSync(() => {
      for (const fact of facts) this.members.apply(fact);
    });
  }

  // ------------------------------------------------------------------ reads

  /** A page of messages (a seq range: seqs have no gaps); 404 `chat_not_found` for a non-member. */
  async page(req: PageRequest): Promise<Outcome<Message[]>> {
    const meta = await this.meta(req.chatId);
    if (!meta || !this.members.get(req.userId)) return chatNotFound(req.chatId);
    const [from, to] = pageRange(meta.lastSeq, req);
    if (from > to) return { ok: true, value: [] };
    const rows = await this.legacy.range(meta, from, to);
    const ordered = req.order === "desc" ? rows.reverse() : rows;
    return { ok: true, value: ordered.map((row) => messageOf(meta, row)) };
  }

  /** The chat as `userId` sees it, current to the last commit (the directory's list lags up to a second). */
  async view(chatId: string, userId: string): Promise<Outcome<Chat>> {
    const meta = await this.meta(chatId);
    const member = meta && this.members.get(userId);
    if (!meta || !member) return chatNotFound(chatId);
    const [last] = meta.lastSeq > 0 ? await this.legacy.range(meta, meta.lastSeq, meta.lastSeq) : [];
    return {
      ok: true,
      value: {
        id: meta.chatId,
        type: meta.type,
        title: meta.title,
        members: this.members.all().map(toChatMember),
        lastMessage: last ? messageOf(meta, last) : null,
        lastSeq: meta.lastSeq,
        unreadCount: Math.max(0, meta.lastSeq - member.lastReadSeq),
        createdAt: new Date(meta.createdAt).toISOString(),
      },
    };
  }

  /** Reconciliation: this chat's transfer messages summed per sender, those with a transfer id below `before` (null: all). */
  async transferTotals(chatId: string, before: string | null = null): Promise<ChatTransferTotals> {
    const meta = await this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.totals(meta, before) : { senders: [], legacy: null }) };
  }

  /** Reconciliation: the messages of these transfers in this chat. */
  async transferMessagesByIds(chatId: string, transferIds: string[]): Promise<ChatTransferMessages> {
    const meta = await this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.byTransferIds(meta, transferIds) : { messages: [], legacy: null }) };
  }

  /** Reconciliation: a page of a member's transfer messages, sent or received, by transfer id. */
  async transferMessagesPage(chatId: string, query: TransferMessagePage): Promise<ChatTransferMessages> {
    const meta = await this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.page(meta, query) : { messages: [], legacy: null }) };
  }

  /** A message of this chat by id, for the Worker's lookups (null when it is not here). */
  async message(chatId: string, messageId: string): Promise<Message | null> {
    const meta = await this.meta(chatId);
    const row = meta ? await this.legacy.byId(meta, messageId) : undefined;
    return meta && row ? messageOf(meta, row) : null;
  }

  /** The migration Workflow: a page of this chat's D1 history, seq `from`..`to`. */
  async importLegacy(chatId: string, from: number, to: number, rows: ChatMessageRow[]) {
    const meta = await this.meta(chatId);
    if (!meta) return null;
    return this.ctx.storage.transactionSync(() => this.legacy.importPage(from, to, rows));
  }

  /** The migration Workflow's first call for a chat: the directory's markers moved forward, and how far its history has moved. */
  async importMarkers(chatId: string, markers: readonly LegacyMarker[]): Promise<LegacyProgress | null> {
    const meta = await this.meta(chatId);
    if (!meta) return null;
    const markersMoved = this.ctx.storage.transactionSync(() => this.legacy.importMarkers(markers));
    const { legacyUpTo, importedUpTo } = this.current();
    return { legacyUpTo, importedUpTo, markersMoved };
  }

  /** The migration Workflow: send keys of the old design whose messages are this chat's; how many were stored. */
  async importSendKeys(chatId: string, keys: readonly LegacySendKey[]): Promise<number | null> {
    const meta = await this.meta(chatId);
    return meta ? this.storeLegacyKeys(meta, keys) : null;
  }

  private async storeLegacyKeys(meta: ChatMeta, keys: readonly LegacySendKey[]): Promise<number> {
    const rows = await this.legacy.sendKeyRows(meta, keys, this.now());
    const stored = this.ctx.storage.transactionSync(() => rows.filter((row) => this.keys.importLegacy(row)).length);
    // The alarm expires them with the keys of this chat's own sends (keys.ts).
    if (stored > 0) this.wakeAt(Math.min(...rows.map((row) => row.createdAt)) + IDEMPOTENCY_RETENTION_MS + 1);
    return stored;
  }

  /**
   * Until the migration has moved this chat (it moves every key before any chat's messages), a
   * retry of a send of the old design may come here before its key has: its outcome is read from
   * D1 first, so the retry is answered, never sent twice. One D1 read per keyed send into a
   * chat not moved yet; none after.
   */
  private async adoptLegacyKey(meta: ChatMeta, userId: string, key: string): Promise<void> {
    if (meta.importedUpTo >= meta.legacyUpTo || this.keys.find(userId, key, this.now())) return;
    const legacy = await this.effects.legacySendKey(meta.chatId, userId, key);
    if (legacy) await this.storeLegacyKeys(meta, [legacy]);
  }

  // ------------------------------------------------------------------ behind the answers

  private current(): ChatMeta {
    const meta = this.storedMeta();
    if (!meta) throw new Error("the chat row vanished");
    return meta;
  }

  /**
   * After a committed change: the directory is owed a summary, and `events` go to every member's
   * realtime object (it knows whether it has sockets), so a connect tells no chat anything.
   */
  private changed(events: RealtimeEvent[], alsoNotify: string[] = []): void {
    this.wakeAt(this.now() + SUMMARY_FLUSH_MS);
    const targets = [...new Set([...this.members.everyone(), ...alsoNotify])];
    if (events.length === 0 || targets.length === 0) return;
    this.ctx.waitUntil(this.effects.push(targets, events).catch((error) => log.warn("chat.push_failed", { error })));
  }

  private wakeAt(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  /** The directory summary owed, then key expiry; wakes again for whichever comes first. */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    if (!this.hasSchema) return;
    const now = this.now();
    const flushAgain = await this.summary.flush(now);
    const expiry = this.ctx.storage.transactionSync(() => this.keys.expire(now));
    const next = [flushAgain, expiry].filter((at): at is number => at !== null);
    if (next.length > 0) this.wakeAt(Math.max(Math.min(...next), now + 1));
  }
}

/** A page's seq range [from, to] (clipped to 1..lastSeq); `take` rows at most. */
export function pageRange(lastSeq: number, req: Pick<PageRequest, "order" | "seq" | "take">): [number, number] {
  if (req.order === "asc") {
    const from = (req.seq ?? 0) + 1;
    return [from, Math.min(lastSeq, from + req.take - 1)];
  }
  const to = req.seq === null ? lastSeq : Math.min(lastSeq, req.seq - 1);
  return [Math.max(1, to - req.take + 1), to];
}

/** Whether the object's SQLite already holds the chat schema (read-only: sqlite_master). */
function schemaExists(storage: DurableObjectStorage): boolean {
  return storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").toArray().length > 0;
}
