import { createRouter } from "../../lib/create-router";
import { exactReply, ok } from "../../lib/envelope";
import { rateLimitHeaders } from "../../lib/sliding-window";
import { currentActor, currentUser, deferredAdminRefusal } from "../../middlewares/auth";
import { requestWaitUntil } from "../../services/realtime";
import { executeTransfer } from "../../services/transfers";
import { getLimits, getTransfer, getWallet, grantCredits, listTransactions } from "../../services/wallets";
import * as routes from "./wallets.routes";

// Transfers and grants are declared `idempotent: "wallet"`: the wallet object keeps their outcomes
// and answers a stored one before any check (the transfer's rate limit is counted there too).
export const walletsRouter = createRouter()
  .openapi(routes.sendCreditTransfer, async (c) => {
    const sender = currentUser(c);
    const answer = await executeTransfer(
      c.env,
      c.var.config,
      sender.id,
      sender.sessionId,
      c.req.valid("json"),
      c.var.idempotencyKey,
      requestWaitUntil(c),
    );
    if (answer.rateLimit) for (const [name, value] of Object.entries(rateLimitHeaders(answer.rateLimit))) c.header(name, value);
    return exactReply(c, answer.reply);
  })
  .openapi(routes.getMyWallet, async (c) => ok(c, await getWallet(c.env, c.var.config, currentUser(c).id), 200))
  .openapi(routes.listMyTransactions, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return ok(c, await listTransactions(c.env, c.var.config, currentUser(c).id, limit, cursor), 200);
  })
  .openapi(routes.getMyLimits, async (c) => ok(c, await getLimits(c.env, c.var.config, currentUser(c).id), 200))
  .openapi(routes.getMyTransfer, async (c) => {
    const { transferId } = c.req.valid("param");
    return ok(c, await getTransfer(c.env, c.var.config, currentUser(c).id, transferId, requestWaitUntil(c)), 200);
  })
  .openapi(routes.grantCredits, async (c) => {
    const { userId } = c.req.valid("param");
    const { actorId, requestId } = currentActor(c);
    const body = c.req.valid("json");
    const reply = await grantCredits(
      c.env,
      c.var.config,
      { adminId: actorId, requestId, refusal: deferredAdminRefusal(c) },
      userId,
      body,
      c.var.idempotencyKey,
      requestWaitUntil(c),
    );
    return exactReply(c, reply);
  });
