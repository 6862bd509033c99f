import type { Context } from "hono";
import { successBody } from "../lib/envelope";
import { IDEMPOTENCY_HEADER, parseIdempotencyKey, REPLAYED_HEADER, requestFingerprint } from "../lib/idempotency";
import type { AppEnv, RouteStep } from "../lib/types";
import { idempotent, type StoredOutcome } from "../services/idempotency";
import { findMessage } from "../services/messages";
import { currentUser } from "./auth";

/** Every idempotent route: `c.var.idempotencyKey` (null without the header), 400 for a malformed key. */
export const parseKeyStep: RouteStep = async (c, next) => {
  c.set("idempotencyKey", parseIdempotencyKey(c.req.header(IDEMPOTENCY_HEADER)) ?? null);
  return next();
};

/** A stored outcome, byte for byte, marked as a replay. */
export function replayResponse(c: Context<AppEnv>, outcome: StoredOutcome): Response {
  return c.body(outcome.body, outcome.status as 200, { "Content-Type": "application/json", [REPLAYED_HEADER]: "true" });
}

/**
 * Routes whose outcome is kept in D1 (message sends, `idempotent: "d1"`): a key with a stored
 * outcome is answered here, before the steps after it (the rate limit) and the handler, which
 * runs holding the claim (`c.var.idempotencyClaim`) so its insert can record the message on it.
 * Only 2xx answers are stored; a refusal (thrown or not) releases the key.
 */
export const storedOutcomeStep: RouteStep = async (c, next) => {
  const key = c.var.idempotencyKey;
  if (key === null) return next();
  const db = c.var.db;
  const body: unknown = await c.req.json().catch(() => null);
  const fingerprint = await requestFingerprint(c.req.method, new URL(c.req.url).pathname, body);
  const result = await idempotent(
    db,
    { userId: currentUser(c).id, key, fingerprint },
    (claim) => {
      c.set("idempotencyClaim", claim);
      return next();
    },
    async (response) =>
      response.status >= 200 && response.status < 300 ? { status: response.status, body: await response.clone().text() } : null,
    // A send whose message committed but whose response was never stored: that message, as its 201.
    async (messageId) => {
      const message = await findMessage(db, messageId);
      if (!message) throw new Error(`message ${messageId} recorded on an idempotency key is missing`);
      return { status: 201, body: JSON.stringify(successBody(message, 201)) };
    },
  );
  return "replay" in result ? replayResponse(c, result.replay) : result.fresh;
};
