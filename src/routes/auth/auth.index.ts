import { createDb } from "../../db/client";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentUser } from "../../middlewares/auth";
import { toUser } from "../../schemas/user";
import * as auth from "../../services/auth";
import { clientIp, enforceRateLimit } from "../../services/rate-limit";
import * as routes from "./auth.routes";

const sessionBody = (session: auth.Session) => ({
  user: toUser(session.user, { includeEmail: true }),
  accessToken: session.accessToken,
  refreshToken: session.refreshToken,
  expiresIn: session.expiresIn,
});

export const authRouter = createRouter()
  .openapi(routes.register, async (c) => {
    await enforceRateLimit(c, "authIp", clientIp(c));
    const session = await auth.register(c.env, createDb(c.env.DB), c.var.config, c.req.valid("json"));
    return ok(c, sessionBody(session), 201);
  })
  .openapi(routes.login, async (c) => {
    const body = c.req.valid("json");
    await enforceRateLimit(c, "authIp", clientIp(c));
    // Last, so the headers a client sees are those of the tighter per-email limit.
    await enforceRateLimit(c, "login", body.email.toLowerCase());
    const session = await auth.login(createDb(c.env.DB), c.var.config, body);
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.refresh, async (c) => {
    await enforceRateLimit(c, "authIp", clientIp(c));
    const session = await auth.refresh(createDb(c.env.DB), c.var.config, c.req.valid("json").refreshToken);
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.logout, async (c) => {
    await auth.logout(createDb(c.env.DB), currentUser(c).id, c.req.valid("json").refreshToken);
    return ok(c, { loggedOut: true as const }, 200);
  });
