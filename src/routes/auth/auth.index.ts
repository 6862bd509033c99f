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
    const session = await auth.refresh(c.env, createDb(c.env.DB), c.var.config, c.req.valid("json").refreshToken);
    return ok(c, sessionBody(session), 200);
  })
  .openapi(routes.logout, async (c) => {
    await auth.logout(c.env, createDb(c.env.DB), currentUser(c), c.req.valid("json").refreshToken);
    return ok(c, { loggedOut: true as const }, 200);
  })
  .openapi(routes.logoutAll, async (c) => {
    const result = await auth.logoutAll(c.env, createDb(c.env.DB), currentUser(c));
    return ok(c, { loggedOut: true as const, ...result }, 200);
  })
  .openapi(routes.changePassword, async (c) => {
    const caller = currentUser(c);
    await enforceRateLimit(c, "authIp", clientIp(c));
    // Keyed by account (a caller is signed in), in the sign-in limit's own namespace: `account:` never collides with an email.
    await enforceRateLimit(c, "login", `account:${caller.id}`);
    const session = await auth.changePassword(c.env, createDb(c.env.DB), c.var.config, caller, c.req.valid("json"));
    return ok(c, sessionBody(session), 200);
  });
