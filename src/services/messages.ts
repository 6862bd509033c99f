import { z } from "zod";
import type { Database } from "../db/client";
import type { SendAnswer, SendKey, SendResult } from "../durable-objects/chat/chat-types";
import type { TransferMessage } from "../durable-objects/wallet/effects";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { Config } from "../lib/config";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError, type Outcome, unwrap } from "../lib/errors";
import { ID_PATTERN } from "../lib/ids";
import { log } from "../lib/log";
import type { RateLimitDecision } from "../lib/sliding-window";
import type { Message } from "../schemas/message";
import { answer, chatOfMessageId, chatStub } from "./chat-objects";
import { knownDirectChat, openDirectChat } from "./chats";

/**
 * Messages, through their chat objects (durable-objects/chat/): a send, a page, an edit or a
 * delete is one call to the chat's object, and no D1 round trip on its way (docs/chats.md). A
 * send first passes through its sender's object (the key registry and the per-minute limit,
 * wallet/send-gate.ts): the two object calls replace the limiter call and the D1 batch a send made
 * before.
 */

/** Who sends, with which key: what every send needs from its request. */
export type SendContext = {
  env: Env;
  db: Database;
  config: Config;
  userId: string;
  /** The Idempotency-Key and the fingerprint of its request, or null. */
  key: SendKey | null;
};

/** A send's reply: the exact response (a replay's stored bytes), and the rate-limit decision to report. */
export type SendReply = SendAnswer & { rateLimit: RateLimitDecision | null };

/**
 * A text message, through the sender's object (its key registry, its limit: a replay of a key it
 * knows is never counted or limited) and then the chat's. `chatOf` finds the chat after the key
 * is registered, so a used key answers first (API.md §1); a send refused after that (by `chatOf`
 * or by the chat) gives its key back, so a corrected retry runs.
 */
async function sendThrough(
  ctx: SendContext,
  target: string,
  chatOf: () => Promise<string>,
  text: { content: string; replyToMessageId: string | null; clientMessageId: string | null },
): Promise<SendReply> {
  const sender = walletStub(ctx.env, ctx.userId);
  const gate = unwrap(await sender.admitSend({ key: ctx.key, target, ratePerMinute: ctx.config.rateLimits.messagesPerMinute }));
  const release = async () => {
    if (gate.claim !== "new" || !ctx.key) return;
    const { key, fingerprint } = ctx.key;
    await sender.releaseSendKey(key, fingerprint).catch((error) => log.warn("messages.key_release_failed", { error }));
  };
  let result: SendResult;
  try {
    const chatId = await chatOf();
    result = await chatStub(ctx.env, chatId).send({ chatId, senderId: ctx.userId, ...text, key: ctx.key, refusal: null });
  } catch (error) {
    // Refused before the chat ran it: nothing of this send happened. Anything else may have.
    if (error instanceof ApiError) await release();
    throw error;
  }
  if (!result.ok) await release();
  return { ...unwrap(result), rateLimit: gate.rateLimit };
}

/** v2: a text message into a chat you are a member of (the chat object's rules: posting.ts). */
export async function sendChatMessage(
  ctx: SendContext,
  input: { chatId: string; content: string; replyToMessageId?: string | null; clientMessageId?: string | null },
): Promise<SendReply> {
  // An explicit null means absent (the Message resource types both fields string|null).
  const text = {
    content: input.content,
    replyToMessageId: input.replyToMessageId ?? null,
    clientMessageId: input.clientMessageId ?? null,
  };
  return sendThrough(ctx, `chat:${input.chatId}`, async () => input.chatId, text);
}

/**
 * v1: a text message to a user, in your direct chat with them. A known pair goes straight to its
 * chat object; a pair with no chat yet opens one first (the directory's checks: the recipient
 * exists, you are active, they have not blocked you).
 */
export async function sendDirectMessage(ctx: SendContext, recipientId: string, content: string): Promise<SendReply> {
  const chatOf = async () => {
    if (recipientId === ctx.userId) throw new ApiError("validation_failed", ["recipientId: cannot message yourself"]);
    return (await knownDirectChat(ctx.db, ctx.userId, recipientId)) ?? (await openDirectChat(ctx.db, ctx.userId, recipientId));
  };
  return sendThrough(ctx, `direct:${recipientId}`, chatOf, { content, replyToMessageId: null, clientMessageId: null });
}

/**
 * Posts credited transfers' `credit_transfer` messages (the wallet's effects): one call per chat,
 * each keyed by transfer id inside its chat object (a repeat returns the first). In the order of
 * `inputs`; a chat that fails fails the call (the wallet then retries one by one).
 */
export async function postCreditTransferMessages(env: Env, inputs: readonly TransferMessage[]): Promise<(Message | undefined)[]> {
  const byChat = new Map<string, TransferMessage[]>();
  for (const input of inputs) byChat.set(input.chatId, [...(byChat.get(input.chatId) ?? []), input]);
  const posted = new Map<string, Message>();
  await Promise.all(
    [...byChat].map(async ([chatId, list]) => {
      const appended = await answer(chatStub(env, chatId).appendTransfers(chatId, list));
      appended.forEach((message, i) => posted.set(list[i]!.transferId, message));
    }),
  );
  return inputs.map((input) => posted.get(input.transferId));
}

export type PagePosition = { order: "desc" | "asc"; seq: number | null };

const messageCursorShape = z.object({
  c: z.string().regex(ID_PATTERN),
  s: z.number().int().min(0),
  o: z.enum(["asc", "desc"]),
});

/**
 * A page of a chat's messages, from its object. Without `afterSeq`: newest first, `cursor`
 * continues below the last seq seen. With `afterSeq`: oldest first from the message after it
 * (catch-up); its `nextCursor` continues forwards. A cursor carries its chat and direction, so it
 * wins over `afterSeq`; a cursor of another chat is 400 (after the membership check: 404 first).
 */
export async function listMessages(
  env: Env,
  userId: string,
  chatId: string,
  query: { limit: number; cursor?: string | undefined; afterSeq?: number | undefined },
) {
  const chat = chatStub(env, chatId);
  let position: PagePosition;
  try {
    position = pagePositionOf(chatId, query);
  } catch (badCursor) {
    await answer(chat.page({ userId, chatId, order: "desc", seq: 0, take: 1 }));
    throw badCursor;
  }
  const rows = await answer(chat.page({ userId, chatId, ...position, take: query.limit + 1 }));
  const { order } = position;
  return toPage(
    rows,
    query.limit,
    (row) => row,
    (row) => ({ c: chatId, s: row.seq, o: order }),
  );
}

function pagePositionOf(chatId: string, query: { cursor?: string | undefined; afterSeq?: number | undefined }): PagePosition {
  if (query.cursor !== undefined) {
    const decoded = decodeCursor(query.cursor, messageCursorShape);
    if (decoded.c !== chatId) throw new ApiError("validation_failed", ["cursor: belongs to another chat"]);
    return { order: decoded.o, seq: decoded.s };
  }
  if (query.afterSeq !== undefined) return { order: "asc", seq: query.afterSeq };
  return { order: "desc", seq: null };
}

type Rewrite = (chat: ReturnType<typeof chatStub>, chatId: string) => Promise<Outcome<Message>>;

/**
 * Edits or deletes by message id (checked by the chat object in API.md's order: 404, 403, 409).
 * The id's route tag names the chat of every message a chat object wrote; the only others are
 * transfers' messages (the id is the transfer id: the caller's wallet knows its chat).
 */
async function rewrite(env: Env, db: Database, userId: string, messageId: string, write: Rewrite): Promise<Message> {
  const notFound = new ApiError("message_not_found", [`No message ${messageId} in your chats`]);
  const tagged = await chatOfMessageId(db, messageId);
  if (tagged) {
    const result = await write(chatStub(env, tagged), tagged);
    if (result.ok || result.code !== "message_not_found") return unwrap(result);
  }
  const chatId = await untaggedChatOf(env, db, userId, messageId);
  if (!chatId || chatId === tagged) throw notFound;
  return unwrap(await write(chatStub(env, chatId), chatId));
}

/** The chat of a message whose id carries no route tag: one of the caller's transfers (its id is the transfer id). */
async function untaggedChatOf(env: Env, db: Database, userId: string, messageId: string): Promise<string | null> {
  const transfer = await walletStub(env, userId).transferChat(messageId);
  if (!transfer) return null;
  return transfer.chatId ?? knownDirectChat(db, userId, transfer.counterpartyId);
}

/** Edits your own text message (a suspended sender cannot: 403 `account_suspended`, after the checks). */
export function editMessage(env: Env, db: Database, userId: string, messageId: string, content: string) {
  return rewrite(env, db, userId, messageId, (chat, chatId) => chat.edit(chatId, userId, messageId, content));
}

/** Deletes your own text message: it keeps its place and seq, with `content: null` and `deletedAt`. */
export function deleteMessage(env: Env, db: Database, userId: string, messageId: string) {
  return rewrite(env, db, userId, messageId, (chat, chatId) => chat.remove(chatId, userId, messageId));
}
