import type { Context } from "hono";
import { createDb } from "../../db/client";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import type { AppEnv } from "../../lib/types";
import { currentUser } from "../../middlewares/auth";
import { idempotent, respondIdempotent } from "../../services/idempotency";
import * as messages from "../../services/messages";
import { enforceRateLimit } from "../../services/rate-limit";
import { publish, requestWaitUntil } from "../../services/realtime";
import * as routes from "./messages.routes";

/**
 * A retry whose first request created its message but died before storing the response: that
 * message, as the 201 it was (the idempotency service only resumes claims that recorded one).
 */
const resumeCreated = (c: Context<AppEnv>) => async (messageId: string) => {
  const message = await messages.findMessage(createDb(c.env.DB), messageId);
  if (!message) throw new Error(`message ${messageId} recorded on an idempotency key is missing`);
  return { data: message, status: 201 as const };
};

export const messagesRouter = createRouter()
  .openapi(routes.sendMessageV1, async (c) => {
    const user = currentUser(c);
    const { recipientId, content } = c.req.valid("json");
    const result = await idempotent(
      c,
      user.id,
      async (claim) => {
        await enforceRateLimit(c, "messages", user.id);
        const posted = await messages.sendDirectMessage(createDb(c.env.DB), user.id, recipientId, content, claim);
        if (posted.created)
          publish(c.env, requestWaitUntil(c), posted.memberIds, { type: "message.created", data: posted.message });
        return { data: posted.message, status: 201 as const };
      },
      resumeCreated(c),
    );
    return respondIdempotent(c, result);
  })
  .openapi(routes.sendMessageV2, async (c) => {
    const user = currentUser(c);
    const body = c.req.valid("json");
    const result = await idempotent(
      c,
      user.id,
      async (claim) => {
        await enforceRateLimit(c, "messages", user.id);
        const posted = await messages.sendChatMessage(createDb(c.env.DB), user.id, body, claim);
        if (posted.created)
          publish(c.env, requestWaitUntil(c), posted.memberIds, { type: "message.created", data: posted.message });
        return posted.created ? { data: posted.message, status: 201 as const } : { data: posted.message, status: 200 as const };
      },
      resumeCreated(c),
    );
    return respondIdempotent(c, result);
  })
  .openapi(routes.listMessages, async (c) => {
    const { chatId } = c.req.valid("param");
    const query = c.req.valid("query");
    return ok(c, await messages.listMessages(createDb(c.env.DB), currentUser(c).id, chatId, query), 200);
  })
  .openapi(routes.editMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    const { content } = c.req.valid("json");
    const { message, memberIds } = await messages.editMessage(createDb(c.env.DB), currentUser(c).id, messageId, content);
    publish(c.env, requestWaitUntil(c), memberIds, { type: "message.updated", data: message });
    return ok(c, message, 200);
  })
  .openapi(routes.deleteMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    const { message, memberIds } = await messages.deleteMessage(createDb(c.env.DB), currentUser(c).id, messageId);
    publish(c.env, requestWaitUntil(c), memberIds, { type: "message.deleted", data: message });
    return ok(c, message, 200);
  });
