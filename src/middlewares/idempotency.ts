import { IDEMPOTENCY_HEADER, parseIdempotencyKey } from "../lib/idempotency";
import type { RouteStep } from "../lib/types";

/**
 * Every idempotent route: `c.var.idempotencyKey` (null without the header), 400 for a malformed
 * key. The outcome is kept by the object that executes the request (the sender's wallet for a
 * transfer, the granted user's for a grant, the chat for a message send), which answers a stored
 * one before any other check (API.md §1).
 */
export const parseKeyStep: RouteStep = async (c, next) => {
  c.set("idempotencyKey", parseIdempotencyKey(c.req.header(IDEMPOTENCY_HEADER)) ?? null);
  return next();
};
