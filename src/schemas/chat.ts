import { z } from "@hono/zod-openapi";
import type { ChatRow } from "../db/schema";
import { EXAMPLE_TIMESTAMP } from "../lib/envelope";
import { type Message, messageSchema } from "./message";

export const chatMemberSchema = z
  .object({
    userId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a123456" }),
    role: z
      .enum(["owner", "member"])
      .openapi({ example: "owner", description: "Group chats have one owner; both people in a direct chat are `member`." }),
    joinedAt: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
  })
  .openapi("ChatMember");

export type ChatMember = z.infer<typeof chatMemberSchema>;

export const chatSchema = z
  .object({
    id: z.string().openapi({ example: "64d15f9e2e6c8f4d5a999999" }),
    type: z.enum(["direct", "group"]).openapi({ example: "group" }),
    title: z.string().nullable().openapi({ example: "Weekend trip", description: "Null for direct chats." }),
    members: z.array(chatMemberSchema).openapi({
      description:
        "Every member on `GET /api/v1/chats/{chatId}` and in the answers that change a chat; in the list (`GET /api/v1/chats`), the first 5 by joining order (the list's size stays bounded whatever the groups hold): `memberCount` says how many there are.",
    }),
    memberCount: z
      .number()
      .int()
      .openapi({ example: 3, description: "How many members the chat has (the list shows a preview of them)." }),
    // A union, not .nullable(): zod-to-openapi renders a nullable $ref as allOf[$ref, {type: [object, null]}],
    // which no null satisfies; the union renders anyOf[$ref, {type: null}].
    lastMessage: z.union([messageSchema, z.null()]).openapi({ description: "Null until the first message." }),
    lastSeq: z
      .number()
      .int()
      .openapi({ example: 42, description: "The highest `seq` in this chat (0 before the first message)." }),
    unreadCount: z
      .number()
      .int()
      .openapi({ example: 3, description: "`lastSeq - lastReadSeq` for the caller; system messages count, your own do not." }),
    createdAt: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
  })
  .openapi("Chat");

export type Chat = z.infer<typeof chatSchema>;

export const readMarkerSchema = z
  .object({
    chatId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a999999" }),
    lastReadSeq: z.number().int().openapi({ example: 42 }),
    unreadCount: z.number().int().openapi({ example: 0 }),
  })
  .openapi("ReadMarker");

/** The answer to removing a member or leaving: who left, and who owns the group now (null: nobody is left). */
export const membershipRemovalSchema = z
  .object({
    chatId: z.string(),
    userId: z.string(),
    ownerId: z.string().nullable(),
  })
  .openapi("ChatMembershipRemoval", {
    example: { chatId: "64d15f9e2e6c8f4d5a999999", userId: "64d15f9e2e6c8f4d5a654321", ownerId: "64d15f9e2e6c8f4d5a123456" },
  });

export type MembershipRemoval = z.infer<typeof membershipRemovalSchema>;

/** A chat of the directory's list as `viewerLastReadSeq`'s member sees it, with its member preview. */
export function toChat(chat: ChatRow, members: ChatMember[], lastMessage: Message | null, viewerLastReadSeq: number): Chat {
  return {
    id: chat.id,
    type: chat.type,
    title: chat.title,
    members,
    memberCount: chat.memberCount,
    lastMessage,
    lastSeq: chat.lastSeq,
    unreadCount: Math.max(0, chat.lastSeq - viewerLastReadSeq),
    createdAt: new Date(chat.createdAt).toISOString(),
  };
}
