import { z } from "@hono/zod-openapi";
import { pageQuerySchema, pageSchema, queryInteger } from "../../lib/cursor";
import { idSchema } from "../../lib/ids";
import { defineRoute, jsonSuccess } from "../../lib/openapi";
import { clientMessageIdSchema, messageContentSchema, messageSchema } from "../../schemas/message";

const TAGS = ["Messages"];

const IDEMPOTENCY_NOTE =
  "Send an `Idempotency-Key` header to make retries safe (API.md §1): its scope is you and the chat the message goes to (v1: your direct chat with the recipient), and across scopes a key is not compared; within it, a retry with the key answers the original status and body byte for byte, before any other check (even after the message was edited or deleted, you were suspended or blocked, or past the limit), and another body under it is 409 `idempotency_key_reused`. A send refused (400, 403, 404, 429) or failed (5xx) stores nothing, so a corrected retry with the same key runs. Rate limited per user in each chat (`RATE_LIMIT_MESSAGES_PER_MINUTE`, default 120 sends per minute per chat, counted by the chat; a replay is never counted): 429 `rate_limited` with `Retry-After`.";

export const sendMessageV1 = defineRoute(
  {
    method: "post",
    path: "/api/v1/messages",
    operationId: "sendMessage",
    tags: TAGS,
    summary: "Send a new message",
    description: [
      "A text message to `recipientId`, in your direct chat with them (created if missing).",
      "403 `account_suspended` if you are suspended, 404 `user_not_found`, 403 `recipient_blocked` if they blocked you; messaging yourself is 400.",
      "Opening a new chat counts against both people's caps (`MAX_CHATS_PER_USER`): past it, 409 `chat_limit_reached`.",
      IDEMPOTENCY_NOTE,
    ].join(" "),
    request: {
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z
              .object({ recipientId: idSchema("recipient's user id"), content: messageContentSchema })
              .openapi("SendMessageV1", { example: { recipientId: "64d15f9e2e6c8f4d5a654321", content: "Hello!" } }),
          },
        },
      },
    },
    responses: {
      201: jsonSuccess(messageSchema, 201, "The message was sent"),
    },
  },
  { auth: "user", idempotent: "wallet", rateLimit: [{ scope: "messages", countedBy: "chat" }], errors: [403, 404] },
);

export const sendMessageV2 = defineRoute(
  {
    method: "post",
    path: "/api/v2/messages",
    operationId: "sendMessageV2",
    tags: TAGS,
    summary: "Send a new message (v2)",
    description: [
      "A text message into a chat you are a member of (404 `chat_not_found` otherwise).",
      "`replyToMessageId` must be a message of the same chat (400 otherwise).",
      "`clientMessageId` deduplicates per sender and chat: sending it again returns the original message with 200.",
      "Both are optional; `null` is the same as leaving them out.",
      "403 `account_suspended` if you are suspended; in a direct chat, 403 `recipient_blocked` if the other person blocked you",
      "(blocks do not stop messages inside group chats).",
      IDEMPOTENCY_NOTE,
    ].join(" "),
    request: {
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z
              .object({
                chatId: idSchema("chat id"),
                content: messageContentSchema,
                // null is accepted as absent: the Message resource types both as string|null.
                replyToMessageId: idSchema("message replied to").nullish(),
                clientMessageId: clientMessageIdSchema.nullish(),
              })
              .openapi("SendMessageV2", {
                example: {
                  chatId: "64d15f9e2e6c8f4d5a999999",
                  content: "Hello!",
                  clientMessageId: "c7a1e0f2-6b1d-4a44-9d0e-2f6a0c1b5e77",
                },
              }),
          },
        },
      },
    },
    responses: {
      201: jsonSuccess(messageSchema, 201, "The message was sent"),
      200: jsonSuccess(messageSchema, 200, "A message with this clientMessageId was already sent: the original"),
    },
  },
  { auth: "user", idempotent: "wallet", rateLimit: [{ scope: "messages", countedBy: "chat" }], errors: [403, 404] },
);

export const messageIdParams = z.object({
  messageId: idSchema("message id").openapi({ param: { name: "messageId", in: "path" }, example: "64d15f9e2e6c8f4d5a888888" }),
});

export const listMessages = defineRoute(
  {
    method: "get",
    path: "/api/v1/messages/chat/{chatId}",
    operationId: "listChatMessages",
    tags: TAGS,
    summary: "List messages in a chat room",
    description: [
      "Without `afterSeq`: newest first; pass `nextCursor` as `cursor` for older messages (new messages arriving meanwhile never shift your pages).",
      "With `afterSeq`: oldest first, starting after that seq (catching up after a reconnect); `nextCursor` continues forwards and takes precedence over `afterSeq`.",
      "Deleted messages keep their place with `content: null`. 404 `chat_not_found` if you are not a member.",
    ].join(" "),
    request: {
      params: z.object({
        chatId: idSchema("chat id").openapi({ param: { name: "chatId", in: "path" }, example: "64d15f9e2e6c8f4d5a999999" }),
      }),
      query: pageQuerySchema.extend({
        afterSeq: queryInteger(0, Number.MAX_SAFE_INTEGER)
          .optional()
          .openapi({
            param: { name: "afterSeq", in: "query" },
            type: "integer",
            minimum: 0,
            maximum: Number.MAX_SAFE_INTEGER,
            example: 40,
            description: "Catch up: messages with a higher seq, oldest first.",
          }),
      }),
    },
    responses: { 200: jsonSuccess(pageSchema(messageSchema), 200, "A page of messages") },
  },
  { auth: "user", errors: [404] },
);

const EDIT_RULES =
  "Checked in this order: not found or not a member → 404 `message_not_found`; not your message → 403 `insufficient_permissions`; a `credit_transfer` or `system` message, or a deleted one → 409 `message_immutable`.";

export const editMessage = defineRoute(
  {
    method: "patch",
    path: "/api/v1/messages/{messageId}",
    operationId: "editMessage",
    tags: TAGS,
    summary: "Edit a message",
    description: `Replaces the text of your own message and sets \`editedAt\`. ${EDIT_RULES} Then a suspended sender gets 403 \`account_suspended\`.`,
    request: {
      params: messageIdParams,
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z.object({ content: messageContentSchema }).openapi("EditMessage", { example: { content: "Hello again!" } }),
          },
        },
      },
    },
    responses: { 200: jsonSuccess(messageSchema, 200, "The edited message") },
  },
  { auth: "user", errors: [403, 404, 409] },
);

export const deleteMessage = defineRoute(
  {
    method: "delete",
    path: "/api/v1/messages/{messageId}",
    operationId: "deleteMessage",
    tags: TAGS,
    summary: "Delete a message",
    description: `Deletes your own message: it keeps its place and \`seq\`, with \`content: null\` and \`deletedAt\`. ${EDIT_RULES}`,
    request: { params: messageIdParams },
    responses: { 200: jsonSuccess(messageSchema, 200, "The deleted message") },
  },
  { auth: "user", errors: [403, 404, 409] },
);
