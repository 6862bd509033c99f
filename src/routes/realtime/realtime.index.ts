import { createDb } from "../../db/client";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { ApiError } from "../../lib/errors";
import { currentUser } from "../../middlewares/auth";
import * as frames from "../../schemas/realtime";
import { assertSessionLive } from "../../services/auth";
import { connect, issueTicket } from "../../services/realtime";
import * as routes from "./realtime.routes";

export const realtimeRouter = createRouter()
  .openapi(routes.createTicket, async (c) => {
    const caller = currentUser(c);
    await assertSessionLive(createDb(c.env.DB), caller);
    const issued = await issueTicket(c.env, caller);
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
    return connect(c.env, c.req.valid("query").ticket, c.var.config.realtimeMaxConnections);
  });

// The frames are no route's body; registering them puts their schemas in the document.
for (const [name, schema] of Object.entries({
  RealtimeFrame: frames.realtimeFrameSchema,
  RealtimePingFrame: frames.pingFrameSchema,
  RealtimePongFrame: frames.pongFrameSchema,
  RealtimeErrorFrame: frames.errorFrameSchema,
})) {
  realtimeRouter.openAPIRegistry.register(name, schema);
}
