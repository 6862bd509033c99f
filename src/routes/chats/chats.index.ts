import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import * as chats from "../../services/chats";
import { publish, requestWaitUntil } from "../../services/realtime";
import * as routes from "./chats.routes";

export const chatsRouter = createRouter()
  .openapi(routes.createChat, async (c) => {
    const user = currentUser(c);
    const body = c.req.valid("json");
    if (body.type === "direct") {
      const { chat, created } = await chats.createDirectChat(c.var.db, user.id, body.memberId);
      return created ? ok(c, chat, 201) : ok(c, chat, 200);
    }
    const group = { title: body.title, memberIds: body.memberIds, maxMembers: c.var.config.maxGroupMembers };
    return ok(c, await chats.createGroupChat(c.var.db, user.id, group), 201);
  })
  .openapi(routes.listChats, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return ok(c, await chats.listChats(c.var.db, currentUser(c).id, limit, cursor), 200);
  })
  .openapi(routes.getChat, async (c) => {
    const { chatId } = c.req.valid("param");
    return ok(c, await chats.getChat(c.var.db, chatId, currentUser(c).id), 200);
  })
  .openapi(routes.addMember, async (c) => {
    const { chatId } = c.req.valid("param");
    const { userId } = c.req.valid("json");
    const add = { userId, maxMembers: c.var.config.maxGroupMembers };
    const { chat, message, notify } = await chats.addMember(c.var.db, chatId, currentUser(c).id, add);
    if (message) publish(c.env, requestWaitUntil(c), notify, { type: "message.created", data: message });
    return ok(c, chat, 200);
  })
  .openapi(routes.removeMember, async (c) => {
    const { chatId, userId } = c.req.valid("param");
    const { removal, message, notify } = await chats.removeMember(c.var.db, chatId, currentUser(c).id, userId);
    publish(c.env, requestWaitUntil(c), notify, { type: "message.created", data: message });
    return ok(c, removal, 200);
  })
  .openapi(routes.markRead, async (c) => {
    const { chatId } = c.req.valid("param");
    const { seq } = c.req.valid("json");
    const { notify, ...marker } = await chats.markRead(c.var.db, chatId, currentUser(c).id, seq);
    publish(c.env, requestWaitUntil(c), notify, {
      type: "chat.read",
      data: { chatId, userId: currentUser(c).id, lastReadSeq: marker.lastReadSeq },
    });
    return ok(c, marker, 200);
  });
