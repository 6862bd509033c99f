import { z } from "@hono/zod-openapi";
import { pageQuerySchema, pageSchema } from "../../lib/cursor";
import { idSchema } from "../../lib/ids";
import { defineRoute, jsonSuccess } from "../../lib/openapi";
import { chatSchema, membershipRemovalSchema, readMarkerSchema } from "../../schemas/chat";
import { NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_MESSAGE, NO_CONTROL_CHARACTERS_NOTE } from "../../schemas/text";
import { MAX_GROUP_INVITES } from "../../services/chats";

const TAGS = ["Chats"];

export const chatIdParams = z.object({
  chatId: idSchema("chat id").openapi({ param: { name: "chatId", in: "path" }, example: "64d15f9e2e6c8f4d5a999999" }),
});

const directChatBody = z
  .object({
    type: z.literal("direct"),
    memberId: idSchema("other person's user id"),
  })
  .openapi("CreateDirectChat", { example: { type: "direct", memberId: "64d15f9e2e6c8f4d5a654321" } });

const groupChatBody = z
  .object({
    type: z.literal("group"),
    title: z
      .string()
      .trim()
      .min(1, { message: "must not be empty" })
      .max(100)
      .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
      .openapi({
        example: "Weekend trip",
        description: `1..100 characters after trimming. ${NO_CONTROL_CHARACTERS_NOTE}`,
      }),
    memberIds: z
      .array(idSchema("member's user id"))
      .max(MAX_GROUP_INVITES)
      .default([])
      .openapi({ description: "Users to add besides you (you become the owner). Duplicates and your own id are ignored." }),
  })
  .openapi("CreateGroupChat", {
    example: { type: "group", title: "Weekend trip", memberIds: ["64d15f9e2e6c8f4d5a654321"] },
  });

export const createChat = defineRoute(
  {
    method: "post",
    path: "/api/v1/chats",
    operationId: "createChat",
    tags: TAGS,
    summary: "Create a chat room",
    description: [
      'Direct: `{type: "direct", memberId}` opens your one chat with that person: 201 when created, 200 with the existing chat',
      "(exactly one per pair, even when both create it at the same moment). The same checks as sending apply:",
      "403 `account_suspended` if you are suspended, 404 `user_not_found`, 403 `recipient_blocked` if they blocked you;",
      "a chat with yourself is 400.",
      '\n\nGroup: `{type: "group", title, memberIds}`: 201; you are its owner. Unknown member ids are 404 `user_not_found`;',
      "members who blocked you are 403 `recipient_blocked` (a group does not bypass a block), and 403 `account_suspended` if you are suspended.",
      "A group holds at most `MAX_GROUP_MEMBERS` people, you included (default 200): more is 409 `group_full`.",
      "\n\nCaps: a user is in at most `MAX_CHATS_PER_USER` chats (default 1,000) and owns at most `MAX_GROUPS_OWNED` groups (default 100);",
      "creating a chat past either, yours or a member's, is 409 `chat_limit_reached` and creates nothing.",
      "A direct chat's id is derived from the pair, so both people reach the same chat with no lookup.",
      "Each of `memberIds` counts against your allowance of people added to groups (`RATE_LIMIT_GROUP_ADDS_PER_MINUTE`, default 200 a minute): past it, 429 `rate_limited` with `Retry-After` and nothing is created.",
    ].join(" "),
    request: {
      body: {
        required: true,
        content: { "application/json": { schema: z.discriminatedUnion("type", [directChatBody, groupChatBody]) } },
      },
    },
    responses: {
      201: jsonSuccess(chatSchema, 201, "The chat was created"),
      200: jsonSuccess(chatSchema, 200, "The direct chat with that person already existed"),
    },
  },
  { auth: "user", rateLimit: ["groupAdds"], errors: [403, 404, 409] },
);

export const listChats = defineRoute(
  {
    method: "get",
    path: "/api/v1/chats",
    operationId: "listChats",
    tags: TAGS,
    summary: "List my chat rooms",
    description:
      "Your chats, most recent activity first (a message, or the creation/joining for a chat without one), each with `lastMessage` and your `unreadCount`. The answer's size is bounded whatever the groups hold: each chat's `members` is a preview (its first 5 members by joining order) and `memberCount` says how many it has; the full member list is on `GET /api/v1/chats/{chatId}`. A chat that gets a new message while you page moves to the top of a fresh first page. The list reflects a committed message, marker or member change within 1 s (each chat writes its summary behind its answers); `GET /api/v1/chats/{chatId}` and the chat's message list reflect it at once.",
    request: { query: pageQuerySchema },
    responses: { 200: jsonSuccess(pageSchema(chatSchema), 200, "A page of your chats") },
  },
  { auth: "user" },
);

export const getChat = defineRoute(
  {
    method: "get",
    path: "/api/v1/chats/{chatId}",
    operationId: "getChat",
    tags: TAGS,
    summary: "Get a chat room",
    description:
      "The chat with all its members (`memberCount` of them), last message and your unread count, current to its last commit. 404 `chat_not_found` if it does not exist or you are not a member.",
    request: { params: chatIdParams },
    responses: { 200: jsonSuccess(chatSchema, 200, "The chat") },
  },
  { auth: "user", errors: [404] },
);

export const addMember = defineRoute(
  {
    method: "post",
    path: "/api/v1/chats/{chatId}/members",
    operationId: "addChatMember",
    tags: TAGS,
    summary: "Add a member to a group chat",
    description: [
      "Group owner only (403 `insufficient_permissions` for other members; 403 `account_suspended` for a suspended owner).",
      "A direct chat never takes members: 400 `validation_failed`. 404 `user_not_found` for an unknown user;",
      "403 `recipient_blocked` if that user blocked you (a group does not bypass a block). Adding a current member changes nothing.",
      "The new member sees the history; a `system` message announces them, and only what follows counts as unread for them.",
      "A group already holding `MAX_GROUP_MEMBERS` people (default 200, the owner included) is 409 `group_full`;",
      "a user already in `MAX_CHATS_PER_USER` chats (default 1,000) is 409 `chat_limit_reached`.",
      "Decided by the chat itself; your chat list shows the change within 1 s.",
      "Each add counts against your allowance of people added to groups (`RATE_LIMIT_GROUP_ADDS_PER_MINUTE`, default 200 a minute, shared with group creation's `memberIds`): past it, 429 `rate_limited` with `Retry-After`.",
    ].join(" "),
    request: {
      params: chatIdParams,
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z
              .object({ userId: idSchema("user id") })
              .openapi("AddChatMember", { example: { userId: "64d15f9e2e6c8f4d5a654321" } }),
          },
        },
      },
    },
    responses: { 200: jsonSuccess(chatSchema, 200, "The chat with its new member") },
  },
  { auth: "user", rateLimit: ["groupAdds"], errors: [403, 404, 409] },
);

export const removeMember = defineRoute(
  {
    method: "delete",
    path: "/api/v1/chats/{chatId}/members/{userId}",
    operationId: "removeChatMember",
    tags: TAGS,
    summary: "Remove a member from a group chat, or leave it",
    description: [
      "The owner removes anyone; a member removes only themself (leaving); otherwise 403 `insufficient_permissions`.",
      "When the owner leaves, the longest-standing member becomes the owner (`ownerId` in the answer; null when the chat is now empty).",
      "A direct chat cannot be left: 400 `validation_failed`. A user who was never in the chat is 404 `user_not_found`.",
      "A `system` message records the change. From this answer on, the removed user reads nothing new, sends nothing and gets no frame of the chat.",
      "Repeating a removal (or a leave) answers 200 again with nothing posted, and finishes whatever an earlier attempt left undone (a retry after a timeout or a 5xx is always safe).",
    ].join(" "),
    request: {
      params: chatIdParams.extend({
        userId: idSchema("user id").openapi({ param: { name: "userId", in: "path" }, example: "64d15f9e2e6c8f4d5a654321" }),
      }),
    },
    responses: {
      200: jsonSuccess(membershipRemovalSchema, 200, "The member is out of the chat"),
    },
  },
  { auth: "user", errors: [403, 404] },
);

export const markRead = defineRoute(
  {
    method: "post",
    path: "/api/v1/chats/{chatId}/read",
    operationId: "markChatRead",
    tags: TAGS,
    summary: "Mark a chat room as read",
    description:
      "Moves your read marker to `seq`. It only moves forward: an older `seq` leaves it where it is (200 with the current marker, and no `chat.read` frame: nothing changed). A `seq` above the chat's `lastSeq` is 400.",
    request: {
      params: chatIdParams,
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z
              .object({ seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).openapi({ example: 42 }) })
              .openapi("MarkRead", { example: { seq: 42 } }),
          },
        },
      },
    },
    responses: { 200: jsonSuccess(readMarkerSchema, 200, "Your read marker in this chat") },
  },
  { auth: "user", errors: [404] },
);
