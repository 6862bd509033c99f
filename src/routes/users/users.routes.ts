import { z } from "@hono/zod-openapi";
import { pageQuerySchema, pageSchema } from "../../lib/cursor";
import { idSchema } from "../../lib/ids";
import { defineRoute, jsonSuccess } from "../../lib/openapi";
import { NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_MESSAGE, NO_CONTROL_CHARACTERS_NOTE } from "../../schemas/text";
import { userSchema } from "../../schemas/user";

const TAGS = ["Users"];
const ADMIN_TAGS = ["Admin"];

const userIdParams = z.object({
  userId: idSchema("user id").openapi({ param: { name: "userId", in: "path" } }),
});

const blockStateSchema = z
  .object({
    userId: z.string().openapi({ example: "64d15f9e2e6c8f4d5a654321" }),
    blocked: z.boolean().openapi({ example: true }),
  })
  .openapi("BlockState");

const suspensionBodySchema = z
  .object({
    reason: z
      .string({ error: (issue) => (issue.input === undefined ? "is required" : "must be a string") })
      .trim()
      .min(1, { message: "must not be blank" })
      .max(500, { message: "must be at most 500 characters" })
      .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
      .openapi({
        example: "Spam reported by several users",
        description: `Why (1..500 characters); kept for the record. ${NO_CONTROL_CHARACTERS_NOTE}`,
      }),
  })
  .openapi("SuspensionRequest");

const reinstateBodySchema = z
  .object({
    reason: z
      .string()
      .trim()
      .max(500, { message: "must be at most 500 characters" })
      .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
      .optional()
      .openapi({
        example: "Appeal accepted",
        description: `Optional note; the body itself is optional. ${NO_CONTROL_CHARACTERS_NOTE}`,
      }),
  })
  .openapi("ReinstateRequest");

export const me = defineRoute(
  {
    method: "get",
    path: "/api/v1/users/me",
    operationId: "getMyProfile",
    tags: TAGS,
    summary: "Get my profile",
    description: "The caller's own profile, including `email`.",
    responses: { 200: jsonSuccess(userSchema, 200, "The caller") },
  },
  { auth: "user", errors: [404] },
);

export const getUser = defineRoute(
  {
    method: "get",
    path: "/api/v1/users/{userId}",
    operationId: "getUser",
    tags: TAGS,
    summary: "Get a user's profile",
    description:
      "Public fields of any user; `email` only when it is the caller's own profile or the caller is an active admin as they are now (their current role, status and session are read on the request, whatever the token says: a suspended or demoted admin sees no emails). 404 `user_not_found` if there is no such user.",
    request: { params: userIdParams },
    responses: { 200: jsonSuccess(userSchema, 200, "The user") },
  },
  { auth: "user", errors: [404] },
);

export const searchUsers = defineRoute(
  {
    method: "get",
    path: "/api/v1/users",
    operationId: "searchUsers",
    tags: TAGS,
    summary: "Search users",
    description:
      "Users whose display name starts with `search` (case-insensitive), or whose email is exactly `search`, ordered by display name. Without `search`, every user in that order. Paged with `limit` and `cursor`; `email` is shown only to active admins as they are now (current role, status and session, whatever the token says) and in your own entry.",
    request: {
      query: pageQuerySchema.extend({
        search: z
          .string()
          .max(254, { message: "must be at most 254 characters" })
          .optional()
          .openapi({
            param: { name: "search", in: "query" },
            example: "ali",
            description: "Display-name prefix or exact email.",
          }),
      }),
    },
    responses: { 200: jsonSuccess(pageSchema(userSchema), 200, "A page of users") },
  },
  { auth: "user" },
);

export const block = defineRoute(
  {
    method: "post",
    path: "/api/v1/users/{userId}/block",
    operationId: "blockUser",
    tags: TAGS,
    summary: "Block a user",
    description:
      "The blocked user can no longer open a direct chat with, message, or pay the caller (403 `recipient_blocked`) from the answer on (at the latest 1 s after it); the caller can still reach them. The latest of a block and an unblock always wins, whatever order they reach a chat in. Idempotent. Blocking yourself is 400; an unknown user is 404 `user_not_found`.",
    request: { params: userIdParams },
    responses: { 200: jsonSuccess(blockStateSchema, 200, "The user is blocked") },
  },
  { auth: "user", errors: [404] },
);

export const unblock = defineRoute(
  {
    method: "delete",
    path: "/api/v1/users/{userId}/block",
    operationId: "unblockUser",
    tags: TAGS,
    summary: "Unblock a user",
    description:
      "Lifts a block set by the caller (at the latest 1 s after the answer; the latest of a block and an unblock always wins). Idempotent. Yourself is 400; an unknown user is 404 `user_not_found`.",
    request: { params: userIdParams },
    responses: {
      200: jsonSuccess(
        blockStateSchema.openapi({ example: { userId: "64d15f9e2e6c8f4d5a654321", blocked: false } }),
        200,
        "The user is not blocked",
      ),
    },
  },
  { auth: "user", errors: [404] },
);

export const suspend = defineRoute(
  {
    method: "post",
    path: "/api/v1/admin/users/{userId}/suspension",
    operationId: "suspendUser",
    tags: ADMIN_TAGS,
    summary: "Suspend a user",
    description:
      "Admins only (else 403 `insufficient_permissions`). A suspended user can still sign in and read, but every send of a message or credits answers 403 `account_suspended`, in every chat of the user from the answer on (at the latest 1 s after it); a later reinstatement or suspension always wins over an earlier one. Idempotent (a new reason replaces the old). Admins cannot suspend themselves (400).",
    request: {
      params: userIdParams,
      body: { required: true, content: { "application/json": { schema: suspensionBodySchema } } },
    },
    responses: {
      200: jsonSuccess(
        userSchema.openapi({
          example: {
            id: "64d15f9e2e6c8f4d5a654321",
            displayName: "Bob",
            role: "user",
            status: "suspended",
            createdAt: "2026-01-15T10:30:00.000Z",
            email: "bob@example.com",
          },
        }),
        200,
        "The user, now suspended",
      ),
    },
  },
  { auth: "admin", errors: [404] },
);

export const reinstate = defineRoute(
  {
    method: "delete",
    path: "/api/v1/admin/users/{userId}/suspension",
    operationId: "reinstateUser",
    tags: ADMIN_TAGS,
    summary: "Lift a user's suspension",
    description:
      "Admins only (else 403 `insufficient_permissions`). The user can send again. Idempotent. Nobody lifts their own suspension: 403 `insufficient_permissions`, suspended or not. The optional `reason` is kept in the audit log.",
    request: {
      params: userIdParams,
      body: { required: false, content: { "application/json": { schema: reinstateBodySchema } } },
    },
    responses: { 200: jsonSuccess(userSchema, 200, "The user, active again") },
  },
  { auth: "admin", liftsSuspension: true, errors: [404] },
);
