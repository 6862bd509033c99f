import { DurableObject } from "cloudflare:workers";
import { drizzle } from "drizzle-orm/durable-sqlite";
import { type Outcome, type Refusal, refuse } from "../../lib/errors";
import { log } from "../../lib/log";
import type { Chat } from "../../schemas/chat";
import type { Message } from "../../schemas/message";
import type { RealtimeEvent } from "../../schemas/realtime";
import { Log } from "./append";
import { type ChatMessageRow, type ChatMeta, chatSchema, migrate } from "./chat-schema";
import type {
  AddMember,
  ChatFact,
  ChatTransferMessages,
  ChatTransferTotals,
  CreatedChat,
  MarkerAnswer,
  MemberFact,
  NewChat,
  PageRequest,
  RemovedMember,
  RemoveMember,
  SendCommand,
  SendResult,
  TransferAppend,
  TransferMessagePage,
} from "./chat-types";
import type { ChatEffects } from "./effects";
import { SendKeys } from "./keys";
import { chatNotFound, Members } from "./members";
import { messageOf, Posting } from "./posting";
import { ADMISSION_TIMEOUT_MS, memberFactsOf, Roster } from "./roster";
import { SUMMARY_FLUSH_MS, Summary } from "./summary";
import { TransferReads } from "./transfer-reads";

/** What the binding hands the chat: its effects on the outside world, and (tests only) a clock. */
export type ChatWiring = { effects: ChatEffects; now?: () => number };

/**
 * One chat (`idFromName(chatId)`), SQLite-backed: a thin RPC shell over modules with one job each.
 *
 *   append.ts   the log: seq, message ids, the only writer of messages and transfer totals
 *   members.ts  who may read and send, markers, versioned copies of suspension and blocks
 *   roster.ts   who is in: creation, adds, removals, handover (the owner of membership)
 *   posting.ts  the rules of a send, a transfer's message, an edit, a read, a marker
 *   keys.ts     stored outcomes of keyed sends, scoped by sender
 *   summary.ts  the outbox: the D1 directory row and membership index, the users' chat counts
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
  private readonly roster: Roster;
  private readonly summary: Summary;
  private readonly transfers: TransferReads;
  private readonly effects: ChatEffects;
  private readonly now: () => number;
  private alarmAt: number | null = null;
  /**
   * Whether this object holds a chat's schema. An object is created by any call naming it (a
   * random chat id in a URL, say); only `create` writes a chat, so other calls to an object whose
   * chat was never created answer chat_not_found and leave no storage behind.
   */
  private hasSchema: boolean;
  /** The creation in progress, if any (`create`). */
  private creating: Promise<Outcome<CreatedChat>> | null = null;

  constructor(ctx: DurableObjectState, env: Env, wiring: ChatWiring) {
    super(ctx, env);
    const db = drizzle(ctx.storage, { schema: chatSchema });
    this.effects = wiring.effects;
    this.now = wiring.now ?? Date.now;
    this.members = new Members(db);
    this.log = new Log(db, this.members);
    this.keys = new SendKeys(db);
    this.posting = new Posting(this.log, this.members, this.keys, ctx.storage.kv);
    this.roster = new Roster(db, this.log, this.members);
    this.transfers = new TransferReads(db);
    this.summary = new Summary(db, this.log, this.members, this.roster, this.transfers, this.effects);
    this.hasSchema = schemaExists(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      if (this.hasSchema) migrate(ctx.storage);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // ------------------------------------------------------------------ beginning

  /** The chat, or null: this object holds no chat (never created) or another one. */
  private meta(chatId: string): ChatMeta | null {
    const meta = this.storedMeta();
    return meta?.chatId === chatId ? meta : null;
  }

  private storedMeta(): ChatMeta | undefined {
    return this.hasSchema ? this.log.meta() : undefined;
  }

  /**
   * Creates the chat with its members, here first (chat-first: the directory and the users'
   * objects follow from the outbox). Each member's object counts the chat first (409
   * `chat_limit_reached`); a chat that exists already is answered as it is (`created: false`:
   * a direct chat created twice, or a retry).
   */
  async create(cmd: NewChat): Promise<Outcome<CreatedChat>> {
    // One creation at a time: a second (the other person, a transfer's message) waits for the
    // first and answers what it made, in the order they came.
    while (this.creating) await this.creating.catch(() => undefined);
    if (this.storedMeta()) return this.created(cmd, false);
    const creating = this.createNow(cmd);
    this.creating = creating;
    try {
      return await creating;
    } finally {
      this.creating = null;
    }
  }

  private async createNow(cmd: NewChat): Promise<Outcome<CreatedChat>> {
    const admitted = await this.admitAll(cmd);
    if (!admitted.ok) return admitted;
    const facts = memberFactsOf(cmd.memberIds, admitted.value, cmd.type === "direct");
    this.ctx.storage.transactionSync(() => {
      migrate(this.ctx.storage);
      this.hasSchema = true;
      this.roster.create(cmd, facts);
    });
    // A chat created through the API is in its creator's list by the answer. A transfer's chat
    // (no caps: `limits` null) is listed by the outbox within a second, so the transfer waits on
    // no D1 write (API.md: the chat list reflects a change within 1 s).
    if (cmd.limits) await this.flushNow();
    else this.wakeAt(this.now() + SUMMARY_FLUSH_MS);
    return this.created(cmd, true);
  }

  /**
   * Each member's object counts the new chat (the creator first, as the owner of a group) and
   * answers its facts. On a refusal, those counted already are told to drop it (version 0: a
   * count no chat confirmed).
   */
  private async admitAll(cmd: NewChat): Promise<Outcome<MemberFact[]>> {
    const limits = cmd.limits && { maxChatsPerUser: cmd.limits.maxChatsPerUser, maxGroupsOwned: cmd.limits.maxGroupsOwned };
    const answers = await Promise.all(
      cmd.memberIds.map((userId, i) => {
        const role = cmd.type === "group" && i === 0 ? "owner" : "member";
        const otherIds = cmd.type === "direct" ? cmd.memberIds.filter((id) => id !== userId) : [];
        return this.effects.admitMember(userId, {
          chatId: cmd.chatId,
          userId,
          role,
          requesterId: cmd.requesterId,
          otherIds,
          limits,
        });
      }),
    );
    // A direct chat is opened by POST /chats (memberId) or by a v1 message (recipientId): no field named.
    const refusal = firstRefusal(answers, cmd.type === "group" ? "memberIds" : null);
    if (!refusal) return { ok: true, value: answers.flatMap((answer) => (answer.ok ? [answer.value] : [])) };
    const release = cmd.memberIds.filter((_, i) => answers[i]?.ok).map((userId) => ({ userId, role: null, version: 0 }));
    await this.effects.tellUsers(cmd.chatId, release).catch((error) => log.warn("chat.release_failed", { error }));
    return refusal;
  }

  private created(cmd: NewChat, created: boolean): Outcome<CreatedChat> {
    const meta = this.storedMeta();
    if (meta?.chatId !== cmd.chatId) return chatNotFound(cmd.chatId);
    const chat = this.viewOf(meta, cmd.createdBy);
    return chat.ok ? { ok: true, value: { chat: chat.value, created } } : chat;
  }

  // ------------------------------------------------------------------ writes

  async send(cmd: SendCommand): Promise<SendResult> {
    const meta = this.meta(cmd.chatId);
    if (!meta) return chatNotFound(cmd.chatId);
    const result = this.ctx.storage.transactionSync(() => this.posting.send(this.current(), cmd, this.now()));
    if (result.ok && result.value.status === 201 && !result.value.replayed && result.value.message) {
      this.changed([{ type: "message.created", data: result.value.message }]);
    }
    return result;
  }

  /** Credited transfers' messages (the wallet's effects), keyed by transfer id; pushed by the transfer's announcement. */
  async appendTransfers(chatId: string, transfers: readonly TransferAppend[]): Promise<Outcome<Message[]>> {
    const meta = this.meta(chatId);
    if (!meta) return chatNotFound(chatId);
    const posted = this.ctx.storage.transactionSync(() => this.posting.appendTransfers(this.current(), transfers));
    if (posted.some((p) => p.created)) this.changed([]);
    return { ok: true, value: posted.map((p) => p.message) };
  }

  async edit(chatId: string, userId: string, messageId: string, content: string): Promise<Outcome<Message>> {
    return this.rewrite(chatId, userId, messageId, (row) => {
      const refusal = this.posting.refusalToEdit(userId);
      if (refusal) return refusal;
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
    const meta = this.meta(chatId);
    if (!meta) return refuse("message_not_found", `No message ${messageId} in your chats`);
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
    const meta = this.meta(chatId);
    if (!meta) return chatNotFound(chatId);
    const result = this.ctx.storage.transactionSync(() => this.posting.markRead(this.current(), userId, seq));
    if (!result.ok) return result;
    const { moved, ...marker } = result.value;
    if (moved) this.changed([{ type: "chat.read", data: { chatId, userId, lastReadSeq: marker.lastReadSeq } }]);
    return { ok: true, value: marker };
  }

  /**
   * The owner adds `userId` (roster.ts's checks, then the user's object counts the chat: 409
   * `chat_limit_reached`), with its system message; adding a member changes nothing. The chat as
   * the owner sees it.
   */
  async addMember(cmd: AddMember): Promise<Outcome<Chat>> {
    const meta = this.meta(cmd.chatId);
    if (!meta) return chatNotFound(cmd.chatId);
    const begun = this.ctx.storage.transactionSync(() => this.roster.beginAdd(this.current(), cmd, this.now()));
    if (!begun.ok) return begun;
    if (begun.value.already) return this.viewOf(this.current(), cmd.actorId);
    // A place held by an add that never finishes (a crash between its steps) is given back by the alarm.
    this.wakeAt(this.now() + ADMISSION_TIMEOUT_MS + 1);
    const limits = { maxChatsPerUser: cmd.limits.maxChatsPerUser, maxGroupsOwned: cmd.limits.maxGroupsOwned };
    let admitted: Outcome<MemberFact> | null = null;
    try {
      const admission = {
        chatId: cmd.chatId,
        userId: cmd.userId,
        role: "member" as const,
        requesterId: cmd.actorId,
        otherIds: [],
      };
      admitted = await this.effects.admitMember(cmd.userId, { ...admission, limits });
    } finally {
      // Also when the user's object could not be reached (null): the place is given back.
      const ok = admitted === null ? null : admitted.ok;
      const facts = memberFactsOf([cmd.userId], [admitted?.ok ? admitted.value : undefined], false);
      const row = this.ctx.storage.transactionSync(() => this.roster.finishAdd(this.current(), cmd, facts, ok));
      if (row) this.changed([{ type: "message.created", data: messageOf(meta, row) }]);
      else this.wakeAt(this.now() + SUMMARY_FLUSH_MS);
    }
    if (!admitted) return chatNotFound(cmd.chatId);
    if (!admitted.ok) return firstRefusal([admitted], "userId")!;
    await this.flushNow();
    return this.viewOf(this.current(), cmd.actorId);
  }

  /**
   * The owner removes `userId`, or `userId` leaves, with its system message, pushed to the
   * remaining members and to the removed user. A repeat answers the same and finishes what an
   * earlier attempt left owed (the directory's index, the user's count).
   */
  async removeMember(cmd: RemoveMember): Promise<Outcome<RemovedMember>> {
    const meta = this.meta(cmd.chatId);
    if (!meta) return chatNotFound(cmd.chatId);
    const result = this.ctx.storage.transactionSync(() => this.roster.remove(this.current(), cmd));
    if (!result.ok) return result;
    const { row, ownerId } = result.value;
    if (row) this.changed([{ type: "message.created", data: messageOf(meta, row) }], [cmd.userId]);
    await this.flushNow(true);
    return { ok: true, value: { chatId: cmd.chatId, userId: cmd.userId, ownerId } };
  }

  /**
   * Facts delivered by their owner's outbox (wallet/facts-outbox.ts), applied forward only. A fact
   * that arrives while the chat is being created waits for the creation: nothing is dropped.
   * Resolving is the acknowledgement; a chat that was never created has nobody to tell.
   */
  async applyFacts(chatId: string, facts: readonly ChatFact[]): Promise<void> {
    if (this.creating) await this.creating.catch(() => undefined);
    if (!this.meta(chatId)) return;
    this.ctx.storage.transactionSync(() => {
      for (const fact of facts) this.members.apply(fact);
    });
  }

  // ------------------------------------------------------------------ reads

  /** A page of messages (a seq range: seqs have no gaps); 404 `chat_not_found` for a non-member. */
  async page(req: PageRequest): Promise<Outcome<Message[]>> {
    const meta = this.meta(req.chatId);
    if (!meta) return chatNotFound(req.chatId);
    return this.posting.page(meta, req);
  }

  /** The chat as `userId` sees it, current to the last commit (the directory's list lags up to a second). */
  async view(chatId: string, userId: string): Promise<Outcome<Chat>> {
    const meta = this.meta(chatId);
    return meta ? this.viewOf(meta, userId) : chatNotFound(chatId);
  }

  private viewOf(meta: ChatMeta, userId: string): Outcome<Chat> {
    return this.posting.view(meta, userId);
  }

  /** Reconciliation: this chat's transfer messages summed per sender, those with a transfer id below `before` (null: all). */
  async transferTotals(chatId: string, before: string | null = null): Promise<ChatTransferTotals> {
    const meta = this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.totals(before) : { senders: [], legacy: null }) };
  }

  /** Reconciliation: the messages of these transfers in this chat. */
  async transferMessagesByIds(chatId: string, transferIds: string[]): Promise<ChatTransferMessages> {
    const meta = this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.byTransferIds(transferIds) : { messages: [], legacy: null }) };
  }

  /** Reconciliation: a page of a member's transfer messages, sent or received, by transfer id. */
  async transferMessagesPage(chatId: string, query: TransferMessagePage): Promise<ChatTransferMessages> {
    const meta = this.meta(chatId);
    return { chatId, ...(meta ? this.transfers.page(query) : { messages: [], legacy: null }) };
  }

  /** A message of this chat by id, for the Worker's lookups (null when it is not here). */
  async message(chatId: string, messageId: string): Promise<Message | null> {
    const meta = this.meta(chatId);
    const row = meta ? this.log.byId(messageId) : undefined;
    return meta && row ? messageOf(meta, row) : null;
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

  /**
   * Writes the outbox now, within the request that changed the membership (so the caller's chat
   * list shows it at once); what fails stays owed and the alarm retries it. `usersToo`: the users'
   * objects as well (a removal frees a place in the user's count at once); creations and adds
   * leave them to the alarm (the counts were taken before the change: nothing waits on them).
   */
  private async flushNow(usersToo = false): Promise<void> {
    const again = await this.summary.flush(this.now(), usersToo);
    // Whatever is left (the users' objects, unless told here) goes with the alarm, soon after.
    if (again !== null || !usersToo) this.wakeAt(again ?? this.now() + SUMMARY_FLUSH_MS);
  }

  /** The outbox owed, places held too long, then key expiry; wakes again for whichever comes first. */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    if (!this.hasSchema) return;
    const now = this.now();
    const held = this.ctx.storage.transactionSync(() => this.roster.expireAdmissions(now));
    const flushAgain = await this.summary.flush(now);
    const expiry = this.ctx.storage.transactionSync(() => this.keys.expire(now));
    const next = [held, flushAgain, expiry].filter((at): at is number => at !== null);
    if (next.length > 0) this.wakeAt(Math.max(Math.min(...next), now + 1));
  }
}

/**
 * The refusal a join answers when members' objects refused: the requester's own suspension first,
 * then unknown users, then blocks, then caps; the details of every refusal with that code, each
 * naming the request's `field` (null: the sentence alone).
 */
function firstRefusal(answers: readonly Outcome<unknown>[], field: string | null): Refusal | null {
  const refusals = answers.filter((answer): answer is Refusal => !answer.ok);
  const rank = (code: string) => {
    const at = JOIN_REFUSALS.indexOf(code);
    return at === -1 ? JOIN_REFUSALS.length : at;
  };
  const first = refusals.reduce<Refusal | null>((best, r) => (best === null || rank(r.code) < rank(best.code) ? r : best), null);
  if (!first) return null;
  const named = (detail: string) => (field ? `${field}: ${detail}` : detail.charAt(0).toUpperCase() + detail.slice(1));
  const details = refusals.filter((r) => r.code === first.code).flatMap((r) => r.details.map(named));
  return { ...first, details };
}

const JOIN_REFUSALS = ["account_suspended", "user_not_found", "recipient_blocked", "chat_limit_reached"];

/** Whether the object's SQLite already holds the chat schema (read-only: sqlite_master). */
function schemaExists(storage: DurableObjectStorage): boolean {
  return storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").toArray().length > 0;
}
