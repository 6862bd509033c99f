import { createRouter } from "../../lib/create-router";
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
    return ok(c, sessionBody(session), 201);
  })
  .openapi(routes.login, async (c) => {
    const session = await auth.login(c.var.db, c.var.config, c.req.valid("json"));
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.refresh, async (c) => {
    const session = await auth.refresh(c.var.db, c.var.config, c.req.valid("json").refreshToken);
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.logout, async (c) => {
    await auth.logout(c.var.db, currentUser(c).id, c.req.valid("json").refreshToken);
    return ok(c, { loggedOut: true as const }, 200);
  });
