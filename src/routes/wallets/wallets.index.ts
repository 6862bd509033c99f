import type { Context } from "hono";
import type { StoredReply } from "../../durable-objects/wallet/wallet-types";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { REPLAYED_HEADER } from "../../lib/idempotency";
import { rateLimitHeaders } from "../../lib/sliding-window";
import type { AppEnv } from "../../lib/types";
import { currentActor, currentUser, deferredAdminRefusal } from "../../middlewares/auth";
import { recordGrant } from "../../services/audit";
import { requestWaitUntil } from "../../services/realtime";
import { executeTransfer } from "../../services/transfers";
import { getLimits, getTransfer, getWallet, grantCredits, listTransactions } from "../../services/wallets";
import * as routes from "./wallets.routes";

/**
 * A response the wallet produced (fresh or stored): its exact envelope text, so a replay is the
 * original byte for byte. Typed `never` because a pre-serialized body (the route's declared 201,
 * or a stored 409 error envelope) cannot be expressed as zod-openapi's typed JSON response.
 */
function storedReply(c: Context<AppEnv>, reply: StoredReply): never {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (reply.replayed) headers[REPLAYED_HEADER] = "true";
  return c.body(reply.body, reply.status, headers) as never;
}

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
    return storedReply(c, answer.reply);
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
    const admin = currentUser(c);
    const body = c.req.valid("json");
    const reply = await grantCredits(
      c.env,
      c.var.config,
      { adminId: admin.id, refusal: deferredAdminRefusal(c) },
      userId,
      body,
      c.var.idempotencyKey,
      requestWaitUntil(c),
    );
    if (reply.status === 201) await recordGrant(c.var.db, currentActor(c), JSON.parse(reply.body).data, body.reason);
    return storedReply(c, reply);
  });
