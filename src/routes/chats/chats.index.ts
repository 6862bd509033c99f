import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import * as chats from "../../services/chats";
import * as routes from "./chats.routes";

// Each chat object pushes its own realtime frames (system messages, read markers).
export const chatsRouter = createRouter()
  .openapi(routes.createChat, async (c) => {
    const user = currentUser(c);
    const body = c.req.valid("json");
    if (body.type === "direct") {
      const limits = chats.memberLimitsOf(c.var.config);
      const { chat, created } = await chats.createDirectChat(c.env, user.id, body.memberId, limits);
      return created ? ok(c, chat, 201) : ok(c, chat, 200);
    }
    const group = { title: body.title, memberIds: body.memberIds, limits: chats.memberLimitsOf(c.var.config) };
    return ok(c, await chats.createGroupChat(c.env, user.id, group), 201);
  })
  .openapi(routes.listChats, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return ok(c, await chats.listChats(c.var.db, currentUser(c).id, limit, cursor), 200);
  })
  .openapi(routes.getChat, async (c) => {
    const { chatId } = c.req.valid("param");
    return ok(c, await chats.getChat(c.env, chatId, currentUser(c).id), 200);
  })
  .openapi(routes.addMember, async (c) => {
    const { chatId } = c.req.valid("param");
    const { userId } = c.req.valid("json");
    const add = { userId, limits: chats.memberLimitsOf(c.var.config) };
    return ok(c, await chats.addMember(c.env, c.var.db, chatId, currentUser(c).id, add), 200);
  })
  .openapi(routes.removeMember, async (c) => {
    const { chatId, userId } = c.req.valid("param");
    return ok(c, await chats.removeMember(c.env, c.var.db, chatId, currentUser(c).id, userId), 200);
  })
  .openapi(routes.markRead, async (c) => {
    const { chatId } = c.req.valid("param");
    const { seq } = c.req.valid("json");
    return ok(c, await chats.markRead(c.env, chatId, currentUser(c).id, seq), 200);
  });
