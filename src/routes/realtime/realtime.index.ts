import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { ApiError } from "../../lib/errors";
import { currentUser } from "../../middlewares/auth";
import { errorFrameSchema, pongFrameSchema, realtimeFrameSchema } from "../../schemas/realtime";
import { connect, issueTicket } from "../../services/realtime";
import { assertSessionLive } from "../../services/session-check";
import * as routes from "./realtime.routes";

export const realtimeRouter = createRouter()
  .openapi(routes.createTicket, async (c) => {
    const caller = currentUser(c);
    await assertSessionLive(c.env, caller);
    const issued = await issueTicket(c.env, c.var.config, caller);
    const url = new URL("/api/v1/realtime", c.req.url);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("ticket", issued.ticket);
    return ok(c, { ...issued, url: url.toString() }, 201);
  })
  .openapi(routes.connect, async (c) => {
    // Checked before the ticket, so a plain GET does not burn it.
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError("upgrade_required", ["Open this URL as a WebSocket (Upgrade: websocket)"], { Upgrade: "websocket" });
    }
    return connect(c.env, c.var.config, c.req.valid("query").ticket);
  });

// The frames are no route's JSON body, so zod-openapi would not register them on its own; the
// 101 response of the realtime route references them by name.
const serverFrames = {
  RealtimeFrame: realtimeFrameSchema,
  RealtimePongFrame: pongFrameSchema,
  RealtimeErrorFrame: errorFrameSchema,
};
for (const name of routes.SERVER_FRAMES) realtimeRouter.openAPIRegistry.register(name, serverFrames[name]);
