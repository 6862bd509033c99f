import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import * as messages from "../../services/messages";
import { publish, requestWaitUntil } from "../../services/realtime";
import * as routes from "./messages.routes";

// Sends are declared `idempotent: "d1"` and rate limited: a stored outcome is answered before
// the limit and this handler; the handler runs holding the key's claim (c.var.idempotencyClaim).
export const messagesRouter = createRouter()
  .openapi(routes.sendMessageV1, async (c) => {
    const { recipientId, content } = c.req.valid("json");
    const posted = await messages.sendDirectMessage(c.var.db, currentUser(c).id, recipientId, content, c.var.idempotencyClaim);
    if (posted.created)
      publish(c.env, requestWaitUntil(c), posted.connectedMemberIds, { type: "message.created", data: posted.message });
    return ok(c, posted.message, 201);
  })
  .openapi(routes.sendMessageV2, async (c) => {
    const posted = await messages.sendChatMessage(c.var.db, currentUser(c).id, c.req.valid("json"), c.var.idempotencyClaim);
    if (!posted.created) return ok(c, posted.message, 200);
    publish(c.env, requestWaitUntil(c), posted.connectedMemberIds, { type: "message.created", data: posted.message });
    return ok(c, posted.message, 201);
  })
  .openapi(routes.listMessages, async (c) => {
    const { chatId } = c.req.valid("param");
    const query = c.req.valid("query");
    return ok(c, await messages.listMessages(c.var.db, currentUser(c).id, chatId, query), 200);
  })
  .openapi(routes.editMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    const { content } = c.req.valid("json");
    const { message, notify } = await messages.editMessage(c.var.db, currentUser(c).id, messageId, content);
    publish(c.env, requestWaitUntil(c), notify, { type: "message.updated", data: message });
    return ok(c, message, 200);
  })
  .openapi(routes.deleteMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    const { message, notify } = await messages.deleteMessage(c.var.db, currentUser(c).id, messageId);
    publish(c.env, requestWaitUntil(c), notify, { type: "message.deleted", data: message });
    return ok(c, message, 200);
  });
