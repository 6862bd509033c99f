import { z } from "@hono/zod-openapi";
import { idSchema } from "../../lib/ids";
import { defineRoute, envelope, jsonSuccess } from "../../lib/openapi";
import { chatMigrationSchema } from "../../schemas/chat-migration";

const ADMIN_ONLY = "Admins only (403 `insufficient_permissions` otherwise).";

const HOW_A_RUN_WORKS =
  "For a deployment that ran before chat objects (README, \"Upgrading an existing deployment\"): a Cloudflare Workflow moves the message-send `Idempotency-Key`s still live, then every chat's read markers and D1 messages into the chat's object, in bounded pages, while the API keeps answering (a chat reads what has not moved yet from D1). Every page is idempotent: a second run moves nothing, and a run that fails is finished by starting another. Once a run has completed with `strays: 0`, the D1 history can be dropped (migrations-after-chat-move/).";

export const startChatMigration = defineRoute(
  {
    method: "post",
    path: "/api/v1/admin/chat-migrations",
    operationId: "startChatMigration",
    tags: ["Admin"],
    summary: "Start moving D1 chat history into chat objects",
    description: [
      ADMIN_ONLY,
      "Starts a run and answers 202 with it (`status: running`); follow it at `GET /api/v1/admin/chat-migrations/{migrationId}`. Runs at the same time are safe (each moves only what is not moved yet) but pointless.",
      HOW_A_RUN_WORKS,
    ].join("\n\n"),
    responses: {
      202: {
        description: "The run was started",
        content: { "application/json": { schema: envelope(chatMigrationSchema, 202) } },
      },
    },
  },
  { auth: "admin" },
);

export const getChatMigration = defineRoute(
  {
    method: "get",
    path: "/api/v1/admin/chat-migrations/{migrationId}",
    operationId: "getChatMigration",
    tags: ["Admin"],
    summary: "Get a chat migration run",
    description: [
      ADMIN_ONLY,
      "A run's status and what it has moved (totals of its finished Workflow instances; final once `completed`). 404 `not_found` for an unknown run.",
      HOW_A_RUN_WORKS,
    ].join("\n\n"),
    request: { params: z.object({ migrationId: idSchema("chat migration id") }) },
    responses: { 200: jsonSuccess(chatMigrationSchema, 200, "The run") },
  },
  { auth: "admin", errors: [404] },
);
