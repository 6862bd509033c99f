import { createDb } from "../../db/client";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser, requireAdmin } from "../../middlewares/auth";
import * as users from "../../services/users";
import * as routes from "./users.routes";

// `/users/me` is registered before `/users/{userId}` so "me" is never read as an id.
export const usersRouter = createRouter()
  .openapi(routes.me, async (c) => {
    const viewer = currentUser(c);
    const row = await users.getUserOrThrow(createDb(c.env.DB), viewer.id);
    return ok(c, users.userAsSeenBy(viewer, row), 200);
  })
  .openapi(routes.getUser, async (c) => {
    const row = await users.getUserOrThrow(createDb(c.env.DB), c.req.valid("param").userId);
    return ok(c, users.userAsSeenBy(currentUser(c), row), 200);
  })
  .openapi(routes.searchUsers, async (c) => {
    const page = await users.searchUsers(createDb(c.env.DB), currentUser(c), c.req.valid("query"));
    return ok(c, page, 200);
  })
  .openapi(routes.block, async (c) => {
    const state = await users.blockUser(createDb(c.env.DB), currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.unblock, async (c) => {
    const state = await users.unblockUser(createDb(c.env.DB), currentUser(c).id, c.req.valid("param").userId);
    return ok(c, state, 200);
  })
  .openapi(routes.suspend, async (c) => {
    const admin = requireAdmin(c);
    const row = await users.setSuspension(
      c.env,
      createDb(c.env.DB),
      admin.id,
      c.req.valid("param").userId,
      c.req.valid("json").reason,
    );
    return ok(c, users.userAsSeenBy(admin, row), 200);
  })
  .openapi(routes.reinstate, async (c) => {
    const admin = requireAdmin(c);
    const row = await users.setSuspension(c.env, createDb(c.env.DB), admin.id, c.req.valid("param").userId, null);
    return ok(c, users.userAsSeenBy(admin, row), 200);
  });
