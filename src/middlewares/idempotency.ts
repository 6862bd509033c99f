import type { Context } from "hono";
import { IDEMPOTENCY_HEADER, parseIdempotencyKey, REPLAYED_HEADER, requestFingerprint } from "../lib/idempotency";
import type { AppEnv, RouteStep } from "../lib/types";
import { idempotent, type StoredOutcome } from "../services/idempotency";
import { createdMessageBody, findMessage } from "../services/messages";
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
 * outcome is answered here, before the steps after it (the rate limit) and the handler. The
 * handler runs with `c.var.idempotencyClaim`: first a claim its message batch takes (a fresh key
 * costs no round trip of its own, and the 201 is stored with the message), then, when that batch
 * found the key held or the request was refused before its batch, the claim-first way
 * (services/idempotency.ts). Only 2xx answers are stored; a refusal (thrown or not) keeps no key.
 * A 201 stored with its message is the answer itself, so the first response and every replay
 * are the same bytes.
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
      return { status: 201, body: createdMessageBody(message) };
    },
  );
  if ("replay" in result) return replayResponse(c, result.replay);
  const { fresh, stored } = result;
  return stored ? new Response(stored.body, { status: stored.status, headers: fresh.headers }) : fresh;
};
