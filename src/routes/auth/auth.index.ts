import { createRouter } from "../../lib/create-router";
import { issueDeviceToken } from "../../lib/device-token";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import { toUser } from "../../schemas/user";
import * as auth from "../../services/auth";
import * as routes from "./auth.routes";

const sessionBody = (session: auth.Session) => ({
  user: toUser(session.user, { includeEmail: true }),
  accessToken: session.accessToken,
  refreshToken: session.refreshToken,
  expiresIn: session.expiresIn,
});

export const authRouter = createRouter()
  .openapi(routes.register, async (c) => {
    const session = await auth.register(c.env, c.var.db, c.var.config, c.req.valid("json"));
    return ok(c, { ...sessionBody(session), deviceToken: await issueDeviceToken(c.var.config, session.user.email) }, 201);
  })
  .openapi(routes.login, async (c) => {
    const session = await auth.login(c.env, c.var.db, c.var.config, c.req.valid("json"));
    return ok(c, { ...sessionBody(session), deviceToken: await issueDeviceToken(c.var.config, session.user.email) }, 200);
  })
  .openapi(routes.refresh, async (c) => {
    const session = await auth.refresh(c.env, c.var.db, c.var.config, c.req.valid("json").refreshToken);
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.logout, async (c) => {
    await auth.logout(c.env, currentUser(c), c.req.valid("json").refreshToken);
    return ok(c, { loggedOut: true as const }, 200);
  })
  .openapi(routes.logoutAll, async (c) => {
    const result = await auth.logoutAll(c.env, currentUser(c));
    return ok(c, { loggedOut: true as const, ...result }, 200);
  })
  .openapi(routes.changePassword, async (c) => {
    const session = await auth.changePassword(c.env, c.var.db, c.var.config, currentUser(c), c.req.valid("json"));
    return ok(c, sessionBody(session), 200);
  });
