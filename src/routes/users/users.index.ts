import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import * as users from "../../services/users";
import * as routes from "./users.routes";

// `/users/me` is registered before `/users/{userId}` so "me" is never read as an id.
export const usersRouter = createRouter()
  .openapi(routes.me, async (c) => {
    const viewer = currentUser(c);
    const row = await users.getUserOrThrow(c.var.db, viewer.id);
    return ok(c, users.userAsSeenBy(viewer, row), 200);
  })
  .openapi(routes.getUser, async (c) => {
    const row = await users.getUserOrThrow(c.var.db, c.req.valid("param").userId);
    return ok(c, users.userAsSeenBy(currentUser(c), row), 200);
  })
  .openapi(routes.searchUsers, async (c) => {
    const page = await users.searchUsers(c.var.db, currentUser(c), c.req.valid("query"));
    return ok(c, page, 200);
  })
  .openapi(routes.block, async (c) => {
    const state = await users.blockUser(c.var.db, currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.unblock, async (c) => {
    const state = await users.unblockUser(c.var.db, currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.suspend, async (c) => {
    const admin = currentUser(c);
    const row = await users.setSuspension(c.env, c.var.db, admin.id, c.req.valid("param").userId, c.req.valid("json").reason);
    return ok(c, users.userAsSeenBy(admin, row), 200);
  })
  .openapi(routes.reinstate, async (c) => {
    const admin = currentUser(c);
    const row = await users.setSuspension(c.env, c.var.db, admin.id, c.req.valid("param").userId, null);
    return ok(c, users.userAsSeenBy(admin, row), 200);
  });
