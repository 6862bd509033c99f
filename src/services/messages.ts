import { z } from "zod";
import type { Database } from "../db/client";
import type { SendAnswer, SendCommand, SendKey } from "../durable-objects/chat/chat-types";
import type { TransferMessage } from "../durable-objects/wallet/effects";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { Config } from "../lib/config";
import { decodeCursor, toPage } from "../lib/cursor";
import { directChatIdOf } from "../lib/direct-chat";
import { ApiError, type Outcome, type Refusal, unwrap } from "../lib/errors";
import { ID_PATTERN } from "../lib/ids";
import type { Message } from "../schemas/message";
import { answer, chatStub, chatsOfMessageId } from "./chat-objects";
import { memberLimitsOf, openDirectChat } from "./chats";

/**
 * Messages, through their chat objects (durable-objects/chat/): a send, a page, an edit or a
 * delete is one call to the chat's object and no D1 query (docs/chats.md). The chat decides a
 * send whole: a stored outcome of the key first, then membership, suspension and block facts,
 * its per-chat limit, the append, and the key's outcome stored with the message.
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

/** A send's reply: the exact response (a replay's stored bytes), with the rate-limit decision of a counted send. */
export type SendReply = SendAnswer;

type Text = { content: string; replyToMessageId: string | null; clientMessageId: string | null };

/**
 * One call to the chat. A send whose call fails (a 5xx, the object unreachable) stored nothing,
 * since the key's outcome is written in the transaction of the message it answers: a corrected
 * retry with the same key runs.
 */
async function sendInto(ctx: SendContext, chatId: string, text: Text) {
  const cmd: SendCommand = {
    chatId,
    senderId: ctx.userId,
    ...text,
    key: ctx.key,
    ratePerMinute: ctx.config.rateLimits.messagesPerMinute,
  };
  return chatStub(ctx.env, chatId).send(cmd);
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
  return unwrap(await sendInto(ctx, input.chatId, text));
}

/**
 * v1: a text message to a user, in your direct chat with them, whose id comes from the pair (no
 * lookup). A pair with no chat yet opens one first (the owners' checks: the recipient exists, you
 * are active, they have not blocked you; both people's caps), then sends.
 */
export async function sendDirectMessage(ctx: SendContext, recipientId: string, content: string): Promise<SendReply> {
  if (recipientId === ctx.userId) throw new ApiError("validation_failed", ["recipientId: cannot message yourself"]);
  const chatId = await directChatIdOf(ctx.userId, recipientId);
  const text = { content, replyToMessageId: null, clientMessageId: null };
  const first = await sendInto(ctx, chatId, text);
  if (first.ok || first.code !== "chat_not_found") return unwrap(first);
  await openDirectChat(ctx.env, ctx.userId, recipientId, memberLimitsOf(ctx.config));
  return unwrap(await sendInto(ctx, chatId, text));
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
 * The id's route tag names the chat of every message a chat object wrote (a tag drawn twice, a
 * 1-in-2^48 accident, names each of its chats in turn); a transfer's message keeps the transfer's
 * id, whose chat the caller's wallet knows (or the pair's, derived).
 */
async function rewrite(env: Env, db: Database, userId: string, messageId: string, write: Rewrite): Promise<Message> {
  const notFound = new ApiError("message_not_found", [`No message ${messageId} in your chats`]);
  const tried = new Set<string>();
  for (const chatId of await chatsOfMessageId(db, messageId)) {
    tried.add(chatId);
    const result = await write(chatStub(env, chatId), chatId);
    if (result.ok || result.code !== "message_not_found") return unwrap(result);
  }
  const chatId = await transferChatOf(env, userId, messageId);
  if (!chatId || tried.has(chatId)) throw notFound;
  return unwrap(await write(chatStub(env, chatId), chatId));
}

/** The chat of one of the caller's transfers' messages (its id is the transfer id), or null. */
async function transferChatOf(env: Env, userId: string, messageId: string): Promise<string | null> {
  const transfer = await walletStub(env, userId).transferChat(messageId);
  if (!transfer) return null;
  return transfer.chatId ?? directChatIdOf(userId, transfer.counterpartyId);
}

/** Edits your own text message (a suspended sender cannot: 403 `account_suspended`, after the checks). */
export function editMessage(env: Env, db: Database, userId: string, messageId: string, content: string) {
  return rewrite(env, db, userId, messageId, (chat, chatId) => chat.edit(chatId, userId, messageId, content));
}

/** Deletes your own text message: it keeps its place and seq, with `content: null` and `deletedAt`. */
export function deleteMessage(env: Env, db: Database, userId: string, messageId: string) {
  return rewrite(env, db, userId, messageId, (chat, chatId) => chat.remove(chatId, userId, messageId));
}
