import { and, eq, gte, lt, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { type Param, preparedPerDatabase } from "../db/prepared";
import { idempotencyKeys } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { ApiError } from "../lib/errors";
import { IDEMPOTENCY_HEADER, IDEMPOTENCY_RETENTION_MS } from "../lib/idempotency";

/**
 * Where a caller's `Idempotency-Key`s are registered (API.md §1: one scope for the caller's
 * transfers, one per admin for grants, one per chat for the caller's sends; across scopes a key
 * is not compared):
 * - transfers register theirs in D1 (`idempotency_keys`, one row per caller and key, `outcome_in`
 *   naming the wallet that keeps the outcome) in the pre-check batch they run anyway
 *   (`walletKeyRegistration`);
 * - admin grants claim theirs in the admin's own object, each for one user and request
 *   (durable-objects/wallet/grant-claims.ts), and keep the outcome under the key in the granted
 *   user's object (grants.ts): no D1 row;
 * - message sends keep theirs only in the chat they go to, with the message (docs/chats.md,
 *   "Keys"): a send reads no D1 and registers nothing here.
 */

/**
 * The upsert of a key's row: on the key's conflict, the row this request would have inserted
 * (`excluded`, every column) replaces one past retention (created before `expiredBefore`); a live
 * row is left alone, and a RETURNING upsert then returns nothing.
 */
const replacesExpiredKeyRow = (expiredBefore: Param<number>) => ({
  target: [idempotencyKeys.userId, idempotencyKeys.key],
  set: {
    fingerprint: sql`excluded.fingerprint`,
    responseStatus: sql`excluded.response_status`,
    responseBody: sql`excluded.response_body`,
    messageId: sql`excluded.message_id`,
    outcomeIn: sql`excluded.outcome_in`,
    createdAt: sql`excluded.created_at`,
  },
  setWhere: lt(idempotencyKeys.createdAt, expiredBefore),
});

/**
 * The D1 side of a key whose outcome a wallet object keeps (credit transfers: the sender's wallet). D1 holds one row per (caller, key) whichever endpoint
 * used it first, so the key's scope is the caller across every endpoint (API.md §1); the wallet
 * named by `outcomeIn` is the authority on replays and on reuse with another body among its own
 * keys, so a row with another fingerprint but the same `outcomeIn` is left for that wallet to
 * judge (that is how a corrected retry after a 5xx runs: the wallet never executed the first body).
 *
 * `statements` go into the caller's pre-check batch (one round trip with the checks): claim the
 * key (an expired row is taken over), then read the row. `assertOurs` reads the result: 409
 * `idempotency_key_reused` when another endpoint or wallet holds the key. `release` deletes the
 * row this request created, for a request refused before execution or failed with nothing
 * executed: such requests store nothing (API.md §1).
 */
export function walletKeyRegistration(
  db: Database,
  userId: string,
  key: string,
  fingerprint: string,
  outcomeIn: string,
  now: number = Date.now(),
) {
  const thisKey = and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, key));
  return {
    fingerprint,
    /** For `batchPrepared` with `values`: claim the key (an expired row is taken over), then read its row. */
    queries: preparedKeyRegistration(db),
    values: {
      keyUserId: userId,
      key,
      keyFingerprint: fingerprint,
      keyOutcomeIn: outcomeIn,
      keyCreatedAt: now,
      keyExpiredBefore: now - IDEMPOTENCY_RETENTION_MS,
    },
    assertOurs(rows: { fingerprint: string; outcomeIn: string | null }[]): void {
      const row = rows[0];
      if (row && (row.fingerprint === fingerprint || row.outcomeIn === outcomeIn)) return;
      throw new ApiError("idempotency_key_reused", [
        `${IDEMPOTENCY_HEADER}: this key was used for a different request; use a new key for a new request`,
      ]);
    },
    async release(): Promise<void> {
      await db
        .delete(idempotencyKeys)
        .where(
          and(
            thisKey,
            eq(idempotencyKeys.fingerprint, fingerprint),
            eq(idempotencyKeys.outcomeIn, outcomeIn),
            eq(idempotencyKeys.createdAt, now),
          ),
        );
    },
  };
}

/** The two statements of `walletKeyRegistration`, built once per database (they run on every keyed transfer). */
const preparedKeyRegistration = preparedPerDatabase((db) => {
  const thisKey = and(eq(idempotencyKeys.userId, sql.placeholder("keyUserId")), eq(idempotencyKeys.key, sql.placeholder("key")));
  return [
    db
      .insert(idempotencyKeys)
      .values({
        userId: sql.placeholder("keyUserId"),
        key: sql.placeholder("key"),
        fingerprint: sql.placeholder("keyFingerprint"),
        outcomeIn: sql.placeholder("keyOutcomeIn"),
        createdAt: sql.placeholder("keyCreatedAt"),
        responseStatus: null,
        responseBody: null,
        messageId: null,
      })
      .onConflictDoUpdate(replacesExpiredKeyRow(sql.placeholder("keyExpiredBefore")))
      .prepare(),
    db
      .select({ fingerprint: idempotencyKeys.fingerprint, outcomeIn: idempotencyKeys.outcomeIn })
      .from(idempotencyKeys)
      .where(thisKey)
      .prepare(),
  ] as const;
});
