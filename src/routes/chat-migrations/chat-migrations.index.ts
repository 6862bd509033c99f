import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { getChatMigration, startChatMigration } from "../../services/chat-migration/runs";
import * as routes from "./chat-migrations.routes";

// Admin only: declared `auth: "admin"` in the routes, so no handler checks the role.
export const chatMigrationsRouter = createRouter()
  .openapi(routes.startChatMigration, async (c) => ok(c, await startChatMigration(c.env), 202))
  .openapi(routes.getChatMigration, async (c) => ok(c, await getChatMigration(c.env, c.req.valid("param").migrationId), 200));
