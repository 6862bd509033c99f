import { z } from "@hono/zod-openapi";
import type { ChatMessageRow } from "../durable-objects/chat/chat-schema";
import { EXAMPLE_TIMESTAMP } from "../lib/envelope";

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export const MESSAGE_TYPES = ["text", "credit_transfer", "system"] as const;

export const creditTransferPayloadSchema = z
  .object({
    transferId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a777777" }),
    recipientId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a654321" }),
    amount: z.number().int().openapi({ example: 25, description: "Whole credits moved from the sender to the recipient." }),
    note: z.string().nullable().openapi({ example: "for lunch" }),
  })
  .openapi("CreditTransferPayload");

/**
 * A message of API.md §2. `credit_transfer` messages carry `content: null` (the transfer itself is
 * in `creditTransfer`; clients render it); `system` messages (member added/removed/left) carry a
 * short English sentence. A deleted message keeps its `seq` with `content: null` and `deletedAt`.
 */
export const messageSchema = z
  .object({
    id: z.string().openapi({ example: "64d15f9e2e6c8f4d5a888888" }),
    chatId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a999999" }),
    seq: z.number().int().openapi({ example: 42, description: "Per-chat counter: 1, 2, 3… with no gaps and no repeats." }),
    senderId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a123456" }),
    type: z.enum(MESSAGE_TYPES).openapi({ example: "text" }),
    content: z.string().nullable().openapi({ example: "Hello!" }),
    replyToMessageId: z.string().nullable().openapi({ example: null }),
    clientMessageId: z.string().nullable().openapi({ example: "c7a1e0f2-6b1d-4a44-9d0e-2f6a0c1b5e77" }),
    // A union, not .nullable(), so the document says anyOf[$ref, null] (see Chat.lastMessage).
    creditTransfer: z
      .union([creditTransferPayloadSchema, z.null()])
      .openapi({ example: null, description: "Only on `credit_transfer` messages." }),
    createdAt: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
    editedAt: z.string().nullable().openapi({ example: null }),
    deletedAt: z.string().nullable().openapi({ example: null }),
  })
  .openapi("Message");

export type Message = z.infer<typeof messageSchema>;

/** A chat object's stored message (durable-objects/chat/chat-schema.ts) with its chat, as the API shows it. */
export function toMessage(row: ChatMessageRow & { chatId: string }): Message {
  return {
    id: row.id,
    chatId: row.chatId,
    seq: row.seq,
    senderId: row.senderId,
    type: row.type,
    content: row.deletedAt === null ? row.content : null,
    replyToMessageId: row.replyToMessageId,
    clientMessageId: row.clientMessageId,
    creditTransfer:
      row.type === "credit_transfer" && row.transferId !== null
        ? {
            transferId: row.transferId,
            recipientId: row.transferRecipientId ?? "",
            amount: row.transferAmount ?? 0,
            note: row.transferNote,
          }
        : null,
    createdAt: iso(row.createdAt),
    editedAt: isoOrNull(row.editedAt),
    deletedAt: isoOrNull(row.deletedAt),
  };
}

export const MAX_CONTENT_CHARS = 4000;

/** Message text: trimmed, then 1..4000 characters (Unicode code points); whitespace-only is 400. */
export const messageContentSchema = z
  .string()
  .trim()
  .min(1, { message: "must not be empty or only whitespace" })
  .refine((text) => [...text].length <= MAX_CONTENT_CHARS, { message: `must be at most ${MAX_CONTENT_CHARS} characters` })
  .openapi({ example: "Hello!", minLength: 1, maxLength: MAX_CONTENT_CHARS, description: "1..4000 characters after trimming." });

/** A sender's own id for a message, to deduplicate retries: 1..128 printable ASCII characters. */
export const clientMessageIdSchema = z
  .string()
  .regex(/^[\x20-\x7e]{1,128}$/, { message: "must be 1 to 128 printable ASCII characters" })
  .openapi({
    minLength: 1,
    maxLength: 128,
    example: "c7a1e0f2-6b1d-4a44-9d0e-2f6a0c1b5e77",
    description: "Your id for this message: sending it again in the same chat returns the original with 200.",
  });
