import { successBody } from "../../lib/envelope";
import { invariant, type Outcome, type Refusal, refuse } from "../../lib/errors";
import { hitStoredWindow, type RateLimitDecision, rateLimitedRefusal } from "../../lib/sliding-window";
import type { Chat } from "../../schemas/chat";
import { type Message, toMessage } from "../../schemas/message";
import type { Log } from "./append";
import type { ChatMessageRow, ChatMeta } from "./chat-schema";
import type { MarkerAnswer, PageRequest, SendAnswer, SendCommand, SendResult, TransferAppend } from "./chat-types";
import type { SendKeys } from "./keys";
import { chatNotFound, type Members, toChatMember } from "./members";

/** A message as the API shows it, from a row of this chat. */
export const messageOf = (meta: Pick<ChatMeta, "chatId">, row: ChatMessageRow): Message =>
  toMessage({ ...row, chatId: meta.chatId });

/** The exact response body of a send (the envelope around the message), as answered and stored. */
export const sendBody = (message: Message, status: 200 | 201) => JSON.stringify(successBody(message, status));

const messageNotFound = (messageId: string) => refuse("message_not_found", `No message ${messageId} in your chats`);

/**
 * The chat's rules for what members write and read, each run synchronously inside the caller's
 * one `transactionSync` (no await), so a check and the write it allows see one state.
 */
export class Posting {
  constructor(
    private readonly log: Log,
    private readonly members: Members,
    private readonly keys: SendKeys,
    /** The object's synchronous KV: each sender's per-minute window in this chat. */
    private readonly kv: SyncKvStorage,
  ) {}

  /**
   * A text message (v1 and v2), checked in this order: a key with a stored outcome answers it,
   * byte for byte, before anything else (another body under it is 409); not a member (404),
   * suspended (403); the sender's per-chat limit (429, counted only for a send that gets this
   * far); a known `clientMessageId` of the sender answers the original (200); blocked in a direct
   * chat (403); a reply to a message not in this chat (400). Then the append and, for a keyed
   * send, its stored outcome, together. A refusal stores nothing under the key.
   */
  send(meta: ChatMeta, cmd: SendCommand, now: number): SendResult {
    const stored = cmd.key && this.keys.find(cmd.senderId, cmd.key.key, now);
    if (stored && cmd.key) {
      if (stored.fingerprint !== cmd.key.fingerprint) return reusedKey();
      const status = stored.status as 200 | 201;
      return { ok: true, value: { status, body: stored.body, replayed: true, message: null, rateLimit: null } };
    }
    const refusal = this.members.refusalToPost(meta, cmd.senderId);
    if (refusal) return refusal;
    const rateLimit = hitStoredWindow(this.kv, `send_rate:${cmd.senderId}`, cmd.ratePerMinute, now);
    if (!rateLimit.allowed) return rateLimitedRefusal(rateLimit);
    const same = cmd.clientMessageId === null ? undefined : this.log.byClientId(cmd.senderId, cmd.clientMessageId);
    if (same) return { ok: true, value: this.answer(meta, cmd, same, 200, now, rateLimit) };
    const blocked = this.members.refusalByBlock(meta, cmd.senderId);
    if (blocked) return blocked;
    if (cmd.replyToMessageId !== null && !this.log.byId(cmd.replyToMessageId)) {
      return refuse("validation_failed", "replyToMessageId: no such message in this chat");
    }
    const row = this.log.append(meta, {
      senderId: cmd.senderId,
      type: "text",
      content: cmd.content,
      replyToMessageId: cmd.replyToMessageId,
      clientMessageId: cmd.clientMessageId,
      createdAt: now,
    });
    return { ok: true, value: this.answer(meta, cmd, row, 201, now, rateLimit) };
  }

  /** The answer of a send, stored under its key (if any) in the same transaction as what it answers. */
  private answer(
    meta: ChatMeta,
    cmd: SendCommand,
    row: ChatMessageRow,
    status: 200 | 201,
    now: number,
    rateLimit: RateLimitDecision,
  ): SendAnswer {
    const message = messageOf(meta, row);
    const body = sendBody(message, status);
    if (cmd.key) {
      this.keys.store({ userId: cmd.senderId, ...cmd.key, status, body, messageId: row.id, createdAt: now });
    }
    return { status, body, replayed: false, message, rateLimit };
  }

  /** A page of messages for a member (a seq range: seqs have no gaps); 404 `chat_not_found` for anyone else. */
  page(meta: ChatMeta, req: PageRequest): Outcome<Message[]> {
    if (!this.members.get(req.userId)) return chatNotFound(req.chatId);
    const [from, to] = pageRange(meta.lastSeq, req);
    if (from > to) return { ok: true, value: [] };
    const rows = this.log.range(from, to);
    const ordered = req.order === "desc" ? rows.reverse() : rows;
    return { ok: true, value: ordered.map((row) => messageOf(meta, row)) };
  }

  /** The chat as a member sees it, with every member (the reads' rule: 404 `chat_not_found` for anyone else). */
  view(meta: ChatMeta, userId: string): Outcome<Chat> {
    const member = this.members.get(userId);
    if (!member) return chatNotFound(meta.chatId);
    const last = meta.lastSeq > 0 ? this.log.bySeq(meta.lastSeq) : undefined;
    const all = this.members.all();
    return {
      ok: true,
      value: {
        id: meta.chatId,
        type: meta.type,
        title: meta.title,
        members: all.map(toChatMember),
        memberCount: all.length,
        lastMessage: last ? messageOf(meta, last) : null,
        lastSeq: meta.lastSeq,
        unreadCount: Math.max(0, meta.lastSeq - member.lastReadSeq),
        createdAt: new Date(meta.createdAt).toISOString(),
      },
    };
  }

  /** A suspended member may read and delete, not edit (403 `account_suspended`, after the edit's own checks). */
  refusalToEdit(userId: string): Refusal | null {
    return this.members.get(userId)?.suspended
      ? refuse("account_suspended", "This account is suspended: it can sign in and read, but not send")
      : null;
  }

  /**
   * Credited transfers' messages, each keyed by its transfer id (a repeat finds the first). Blocks
   * and suspension are not checked: the transfer protocol checked them before moving credits, and
   * a transfer that moved credits must get its message.
   */
  appendTransfers(meta: ChatMeta, transfers: readonly TransferAppend[]): { message: Message; created: boolean }[] {
    return transfers.map((t) => {
      const existing = this.log.byTransfer(t.transferId);
      if (existing) return { message: messageOf(meta, existing), created: false };
      invariant(this.members.get(t.senderId) && this.members.get(t.recipientId), `transfer ${t.transferId} outside its chat`);
      const row = this.log.append(meta, {
        id: t.messageId,
        senderId: t.senderId,
        type: "credit_transfer",
        transferId: t.transferId,
        transferRecipientId: t.recipientId,
        transferAmount: t.amount,
        transferNote: t.note,
        createdAt: t.createdAt,
      });
      return { message: messageOf(meta, row), created: true };
    });
  }

  /**
   * The message `messageId` as `userId` may change it, in API.md's order: not found or not a
   * member → 404 `message_not_found`; not yours → 403; not a live text message → 409 `message_immutable`.
   */
  editable(meta: ChatMeta, userId: string, row: ChatMessageRow | undefined): Outcome<ChatMessageRow> {
    if (!row || !this.members.get(userId)) return messageNotFound(row?.id ?? "");
    if (row.senderId !== userId) return refuse("insufficient_permissions", "Only the sender edits or deletes a message");
    if (row.type !== "text") return refuse("message_immutable", `A ${row.type} message cannot be edited or deleted`);
    if (row.deletedAt !== null) return refuse("message_immutable", "This message was deleted");
    invariant(meta.chatId !== "", "a chat without its id");
    return { ok: true, value: row };
  }

  /** Moves `userId`'s marker forward to `seq`; 404 for a non-member, 400 above `lastSeq`. `moved`: whether it changed. */
  markRead(meta: ChatMeta, userId: string, seq: number): Outcome<MarkerAnswer & { moved: boolean }> {
    const member = this.members.get(userId);
    if (!member) return refuse("chat_not_found", `No chat ${meta.chatId} among your chats`);
    if (seq > meta.lastSeq) return refuse("validation_failed", `seq: ${seq} is above the chat's lastSeq (${meta.lastSeq})`);
    const lastReadSeq = this.members.markRead(userId, seq);
    const unreadCount = Math.max(0, meta.lastSeq - lastReadSeq);
    return { ok: true, value: { chatId: meta.chatId, lastReadSeq, unreadCount, moved: lastReadSeq !== member.lastReadSeq } };
  }
}

const reusedKey = () => refuse("idempotency_key_reused", "This Idempotency-Key was already used with a different request body");

/** A page's seq range [from, to] (clipped to 1..lastSeq); `take` rows at most. */
export function pageRange(lastSeq: number, req: Pick<PageRequest, "order" | "seq" | "take">): [number, number] {
  if (req.order === "asc") {
    const from = (req.seq ?? 0) + 1;
    return [from, Math.min(lastSeq, from + req.take - 1)];
  }
  const to = req.seq === null ? lastSeq : Math.min(lastSeq, req.seq - 1);
  return [Math.max(1, to - req.take + 1), to];
}
