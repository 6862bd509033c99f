import type { Context } from "hono";
import { createRouter } from "../../lib/create-router";
import { exactReply, ok } from "../../lib/envelope";
import { requestFingerprint } from "../../lib/idempotency";
import { rateLimitHeaders } from "../../lib/sliding-window";
import type { AppEnv } from "../../lib/types";
import { currentUser } from "../../middlewares/auth";
import * as messages from "../../services/messages";
import * as routes from "./messages.routes";

/** What a send needs from its request: the caller, and the key with the fingerprint of this request. */
async function sendContext(c: Context<AppEnv>, body: unknown): Promise<messages.SendContext> {
  const key = c.var.idempotencyKey;
  const fingerprint = key === null ? null : await requestFingerprint(c.req.method, new URL(c.req.url).pathname, body);
  return {
    env: c.env,
    db: c.var.db,
    config: c.var.config,
    userId: currentUser(c).id,
    key: key === null || fingerprint === null ? null : { key, fingerprint },
  };
}

/** A send's exact response (a replay's stored bytes), with the rate-limit headers of a counted one. */
function sent(c: Context<AppEnv>, reply: messages.SendReply): never {
  if (reply.rateLimit) for (const [name, value] of Object.entries(rateLimitHeaders(reply.rateLimit))) c.header(name, value);
  return exactReply(c, reply);
}

// Sends are declared `idempotent: "wallet"` (the step only parses the key): the chat object keeps
// the key, scoped to its chat and sender, answers a stored outcome before any other check, counts
// the per-chat limit, and stores the outcome with the message. Each chat pushes its own frames.
export const messagesRouter = createRouter()
  .openapi(routes.sendMessageV1, async (c) => {
    const body = c.req.valid("json");
    return sent(c, await messages.sendDirectMessage(await sendContext(c, body), body.recipientId, body.content));
  })
  .openapi(routes.sendMessageV2, async (c) => {
    const body = c.req.valid("json");
    return sent(c, await messages.sendChatMessage(await sendContext(c, body), body));
  })
  .openapi(routes.listMessages, async (c) => {
    const { chatId } = c.req.valid("param");
    const query = c.req.valid("query");
    return ok(c, await messages.listMessages(c.env, currentUser(c).id, chatId, query), 200);
  })
  .openapi(routes.editMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    const { content } = c.req.valid("json");
    return ok(c, await messages.editMessage(c.env, c.var.db, currentUser(c).id, messageId, content), 200);
  })
  .openapi(routes.deleteMessage, async (c) => {
    const { messageId } = c.req.valid("param");
    return ok(c, await messages.deleteMessage(c.env, c.var.db, currentUser(c).id, messageId), 200);
  });
