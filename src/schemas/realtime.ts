import { z } from "@hono/zod-openapi";
import { EXAMPLE_TIMESTAMP } from "../lib/envelope";
import { idSchema } from "../lib/ids";
import { messageSchema } from "./message";
import { transferSchema, transferWithStatusSchema, walletSchema } from "./wallet";

/**
 * The realtime protocol (API.md "Realtime"), defined once: the server → client frames
 * `{type, data, at}` that `publish` sends, and the client → server frames. The realtime route's
 * OpenAPI description and docs/realtime.md describe these same schemas.
 */

/**
 * Close codes the server ends a socket with (4000–4999 are the application's range). A client
 * that gets 4001 signs in again (or refreshes) before reconnecting; 4003 means the account was
 * suspended (it may reconnect to read); 4008 means a newer connection of the same user took
 * this one's place (do not reconnect in a loop).
 */
export const REALTIME_CLOSE_CODES = {
  sessionEnded: { code: 4001, reason: "session_ended" },
  accountSuspended: { code: 4003, reason: "account_suspended" },
  tooManyConnections: { code: 4008, reason: "too_many_connections" },
} as const;

export const ticketSchema = z
  .object({
    ticket: z.string().openapi({
      description: "Opaque, single-use; pass it as `?ticket=` when opening the WebSocket.",
      example: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEe-HfGi5jKn_M",
    }),
    expiresIn: z.number().int().openapi({ description: "Seconds the ticket stays valid.", example: 60 }),
    url: z.string().openapi({
      description: "The WebSocket URL with the ticket, ready to open (ws:// or wss:// like the request).",
      example:
        "wss://api.credit-chat.example.com/api/v1/realtime?ticket=64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEe-HfGi5jKn_M",
    }),
  })
  .openapi("RealtimeTicket");

export const chatReadSchema = z
  .object({
    chatId: idSchema("chatId"),
    userId: idSchema("userId"),
    lastReadSeq: z.number().int().min(0).openapi({ example: 42 }),
  })
  .openapi("ChatRead");

const at = z.string().openapi({ description: "When the server sent the event (ISO-8601 UTC).", example: EXAMPLE_TIMESTAMP });

function eventFrame<const T extends string, D extends z.ZodType>(type: T, data: D, description: string) {
  return z.object({ type: z.literal(type), data, at }).openapi({ description });
}

export const messageCreatedFrameSchema = eventFrame(
  "message.created",
  messageSchema,
  "A message was posted in one of your chats (text, credit_transfer or system; your own from another device included).",
).openapi("MessageCreatedFrame");

export const messageUpdatedFrameSchema = eventFrame(
  "message.updated",
  messageSchema,
  "A message in one of your chats was edited (`editedAt` set).",
).openapi("MessageUpdatedFrame");

export const messageDeletedFrameSchema = eventFrame(
  "message.deleted",
  messageSchema,
  "A message in one of your chats was deleted (`deletedAt` set, `content: null`; it keeps its `seq`).",
).openapi("MessageDeletedFrame");

export const chatReadFrameSchema = eventFrame(
  "chat.read",
  chatReadSchema,
  "A member of one of your chats moved their read marker (you, from another device, included).",
).openapi("ChatReadFrame");

export const walletUpdatedFrameSchema = eventFrame(
  "wallet.updated",
  walletSchema,
  "Your balance changed (a transfer sent or received, a grant): the wallet right after the change.",
).openapi("WalletUpdatedFrame");

export const transferReceivedFrameSchema = eventFrame(
  "transfer.received",
  transferSchema,
  "Someone sent you credits; the transfer as its sender saw it.",
).openapi("TransferReceivedFrame");

export const transferVoidedFrameSchema = eventFrame(
  "transfer.voided",
  transferWithStatusSchema,
  "A transfer you sent was voided (its credit could not happen within TRANSFER_VOID_AFTER_SECONDS): the amount is back in your balance (a `wallet.updated` frame follows) and nothing reached the recipient.",
).openapi("TransferVoidedFrame");

/** Every frame the server pushes to a connection. */
export const realtimeFrameSchema = z
  .discriminatedUnion("type", [
    messageCreatedFrameSchema,
    messageUpdatedFrameSchema,
    messageDeletedFrameSchema,
    chatReadFrameSchema,
    walletUpdatedFrameSchema,
    transferReceivedFrameSchema,
    transferVoidedFrameSchema,
  ])
  .openapi("RealtimeFrame");

export type RealtimeFrame = z.infer<typeof realtimeFrameSchema>;
/** What a publisher hands to `publish`: `at` is stamped when the frame leaves. */
export type RealtimeEvent = RealtimeFrame extends infer F ? (F extends RealtimeFrame ? Omit<F, "at"> : never) : never;

export const pongFrameSchema = z.object({ type: z.literal("pong") }).openapi("RealtimePongFrame");

export const errorFrameSchema = z
  .object({
    type: z.literal("error"),
    data: z.object({
      code: z.literal("validation_failed"),
      message: z.string().openapi({ example: 'Clients may only send {"type":"ping"}' }),
    }),
    at,
  })
  .openapi("RealtimeErrorFrame");

export const pingFrameSchema = z.object({ type: z.literal("ping") }).openapi("RealtimePingFrame");
