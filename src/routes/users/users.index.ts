import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentActor, currentUser } from "../../middlewares/auth";
import * as users from "../../services/users";
import * as routes from "./users.routes";

// `/users/me` is registered before `/users/{userId}` so "me" is never read as an id.
export const usersRouter = createRouter()
  .openapi(routes.me, async (c) => {
    const { id } = currentUser(c);
    const row = await users.getUserOrThrow(c.var.db, id);
    return ok(c, users.userAsSeenBy({ id, seesEveryEmail: false }, row), 200);
  })
  .openapi(routes.getUser, async (c) => {
    const { userId } = c.req.valid("param");
    const viewer = currentUser(c);
    const self = { id: viewer.id, seesEveryEmail: false };
    const [row, seenBy] = await Promise.all([
      users.getUserOrThrow(c.var.db, userId),
      userId === viewer.id ? self : users.profileViewer(c.env, viewer),
    ]);
    return ok(c, users.userAsSeenBy(seenBy, row), 200);
  })
  .openapi(routes.searchUsers, async (c) => {
    const page = await users.searchUsers(c.env, c.var.db, currentUser(c), c.req.valid("query"));
    return ok(c, page, 200);
  })
  .openapi(routes.block, async (c) => {
    const state = await users.blockUser(c.env, c.var.db, currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.unblock, async (c) => {
    const state = await users.unblockUser(c.env, c.var.db, currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.suspend, async (c) => {
    const { userId } = c.req.valid("param");
    const change = { suspended: true, reason: c.req.valid("json").reason };
    const row = await users.setSuspension(c.env, c.var.db, currentActor(c), userId, change);
    return ok(c, users.userAsSeenBy(users.checkedAdminViewer(currentUser(c)), row), 200);
  })
  .openapi(routes.reinstate, async (c) => {
    const { userId } = c.req.valid("param");
    // The body is optional; its reason, when given, is kept in the audit log.
    const change = { suspended: false, reason: c.req.valid("json")?.reason || null };
    const row = await users.setSuspension(c.env, c.var.db, currentActor(c), userId, change);
    return ok(c, users.userAsSeenBy(users.checkedAdminViewer(currentUser(c)), row), 200);
  });
