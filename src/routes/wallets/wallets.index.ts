import type { Context } from "hono";
import type { StoredReply } from "../../durable-objects/wallet/wallet-types";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { REPLAYED_HEADER } from "../../lib/idempotency";
import type { AppEnv } from "../../lib/types";
import { currentUser } from "../../middlewares/auth";
import { admitRequest } from "../../middlewares/rate-limit";
import { executeTransfer, validateTransfer } from "../../services/transfers";
import { getLimits, getTransfer, getWallet, grantCredits, listTransactions, reconcile } from "../../services/wallets";
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

export const walletsRouter = createRouter()
  .openapi(routes.sendCreditTransfer, async (c) => {
    const user = currentUser(c);
    const key = c.var.idempotencyKey;
    const input = validateTransfer(c.var.config, user.id, c.req.valid("json"));
    // The route declares this limit "counted by the wallet"; until the wallet counts it, it is taken here.
    const admit = () => admitRequest(c, "transfers");
    return storedReply(c, await executeTransfer(c.env, c.var.config, input, key, admit));
  })
  .openapi(routes.getMyWallet, async (c) => ok(c, await getWallet(c.env, c.var.config, currentUser(c).id), 200))
  .openapi(routes.listMyTransactions, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return ok(c, await listTransactions(c.env, c.var.config, currentUser(c).id, limit, cursor), 200);
  })
  .openapi(routes.getMyLimits, async (c) => ok(c, await getLimits(c.env, c.var.config, currentUser(c).id), 200))
  .openapi(routes.getMyTransfer, async (c) =>
    ok(c, await getTransfer(c.env, c.var.config, currentUser(c).id, c.req.valid("param").transferId), 200),
  )
  .openapi(routes.grantCredits, async (c) => {
    const admin = currentUser(c);
    const key = c.var.idempotencyKey;
    const reply = await grantCredits(c.env, c.var.config, admin.id, c.req.valid("param").userId, c.req.valid("json"), key);
    return storedReply(c, reply);
  })
  .openapi(routes.reconciliation, async (c) => {
    return ok(c, await reconcile(c.env), 200);
  });
