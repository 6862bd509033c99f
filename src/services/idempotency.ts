import { and, eq, isNull, lt, type SQL } from "drizzle-orm";
import type { Database } from "../db/client";
import { idempotencyKeys } from "../db/schema";
import { ApiError } from "../lib/errors";
import { IDEMPOTENCY_HEADER, IDEMPOTENCY_RETENTION_MS, type IdempotencyClaim } from "../lib/idempotency";

export type { IdempotencyClaim };

/**
 * `Idempotency-Key` for message-creating POSTs (API.md §1), stored in D1 per caller. The same
 * table registers the keys of transfers and admin grants (`walletKeyRegistration`), so a key
 * belongs to one request per caller across all endpoints.
 *
 * - The first request with a key claims it (a row with no response yet), runs, and stores its
 *   success response (status and exact body). Replays answer that status and body verbatim
 *   with `Idempotent-Replayed: true`. The route's step (middlewares/idempotency.ts) runs this
 *   before the rate limit, so a stored outcome answers first (API.md §1).
 * - Same key, different method/path/body (SHA-256 fingerprint of the canonical JSON) → 409
 *   `idempotency_key_reused`.
 * - Anything the request throws (400/403/404/429 refusals before it executed, 5xx) releases the
 *   claim, so a corrected retry with the same key runs.
 * - The execution gets its claim and records the message it creates on it in the message's own
 *   insert batch (`recordMessageOnClaim`). A claim with a message but no stored response belongs
 *   to a request whose write committed but that died (or failed) before storing its response: a
 *   retry answers that message (201, via `resume`, stored for later replays) instead of executing
 *   again, so a key never posts two messages. Such a claim is never released.
 * - A duplicate arriving while the first is in flight polls until the first finishes (and replays
 *   it) or gives up (and runs itself). It waits up to WAIT_MS; a claim older than STALE_MS with no
 *   response belongs to a request that died, and is taken over. A key still in flight after the
 *   wait answers 409 `idempotency_key_reused` ("still in progress; retry").
 * - Keys are kept RETENTION_MS (24 h); expired ones are purged when new keys are claimed.
 */
const WAIT_MS = 10_000;
const STALE_MS = 30_000;

/** An outcome as stored and replayed: the status and the exact response body text. */
export type StoredOutcome = { status: number; body: string };

/** Which request holds a key: the caller, the key, and the fingerprint of method, path and body. */
export type IdempotentRequest = { userId: string; key: string; fingerprint: string };

const claimIs = (claim: IdempotencyClaim) =>
  and(
    eq(idempotencyKeys.userId, claim.userId),
    eq(idempotencyKeys.key, claim.key),
    eq(idempotencyKeys.createdAt, claim.claimedAt),
  );

/** For the message insert's batch: records `messageId` (SQL: NULL when nothing was inserted) on the claim. */
export function recordMessageOnClaim(db: Database, claim: IdempotencyClaim, messageId: SQL) {
  return db.update(idempotencyKeys).set({ messageId }).where(claimIs(claim));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `execute` at most once per (caller, key): a stored outcome is answered first (`replay`),
 * before `execute` and anything it checks; otherwise `execute` runs holding the claim and its
 * result is returned (`fresh`). `outcomeOf` says what to store of it: null (not an executed
 * outcome, e.g. a refusal answered without throwing) releases the claim like a throw does.
 * `resume` rebuilds the outcome of a claim whose message committed but whose response was never
 * stored.
 */
export async function idempotent<R>(
  db: Database,
  request: IdempotentRequest,
  execute: (claim: IdempotencyClaim) => Promise<R>,
  outcomeOf: (result: R) => Promise<StoredOutcome | null>,
  resume: (messageId: string) => Promise<StoredOutcome>,
): Promise<{ replay: StoredOutcome } | { fresh: R }> {
  const { userId, key, fingerprint } = request;
  const thisKey = and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, key));
  const deadline = Date.now() + WAIT_MS;

  for (let attempt = 0; ; attempt++) {
    const now = Date.now();
    const [, claimedRows] = await db.batch([
      db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, now - IDEMPOTENCY_RETENTION_MS)),
      db
        .insert(idempotencyKeys)
        .values({ userId, key, fingerprint, responseStatus: null, responseBody: null, createdAt: now })
        .onConflictDoNothing()
        .returning(),
    ]);
    let claimedAt = claimedRows[0]?.createdAt;

    if (claimedAt === undefined) {
      const row = await db.select().from(idempotencyKeys).where(thisKey).get();
      if (!row) continue; // released between our insert and read: claim again
      if (row.fingerprint !== fingerprint) {
        throw new ApiError("idempotency_key_reused", [
          `${IDEMPOTENCY_HEADER}: this key was used for a different request; use a new key for a new request`,
        ]);
      }
      if (row.responseStatus !== null && row.responseBody !== null) {
        return { replay: { status: row.responseStatus, body: row.responseBody } };
      }
      if (row.messageId !== null) {
        // Its message committed; only the response is missing. Answer it and store it (first store wins).
        const outcome = await resume(row.messageId);
        if (await storeOutcome(db, { userId, key, claimedAt: row.createdAt }, outcome)) return { replay: outcome };
        continue; // stored meanwhile by the request itself: replay that
      }
      if (row.createdAt < now - STALE_MS) {
        const taken = await db
          .update(idempotencyKeys)
          .set({ createdAt: now })
          .where(
            and(
              thisKey,
              eq(idempotencyKeys.createdAt, row.createdAt),
              isNull(idempotencyKeys.responseStatus),
              isNull(idempotencyKeys.messageId),
            ),
          )
          .returning()
          .get();
        if (taken) claimedAt = now;
      }
      if (claimedAt === undefined) {
        if (Date.now() >= deadline) {
          throw new ApiError("idempotency_key_reused", [
            `${IDEMPOTENCY_HEADER}: a request with this key is still in progress; retry shortly`,
          ]);
        }
        await sleep(Math.min(25 * 2 ** Math.min(attempt, 4), 250));
        continue;
      }
    }

    const claim: IdempotencyClaim = { userId, key, claimedAt };
    const release = () =>
      db
        .delete(idempotencyKeys)
        .where(and(claimIs(claim), isNull(idempotencyKeys.responseStatus), isNull(idempotencyKeys.messageId)))
        .catch(() => undefined);
    let result: R;
    try {
      result = await execute(claim);
    } catch (error) {
      await release();
      throw error;
    }
    const outcome = await outcomeOf(result);
    if (outcome === null) await release();
    else await storeOutcome(db, claim, outcome);
    return { fresh: result };
  }
}

/**
 * The D1 side of a key whose outcome a wallet object keeps (credit transfers: the sender's wallet;
 * admin grants: the granted user's wallet). D1 holds one row per (caller, key) whichever endpoint
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
  const fresh = { fingerprint, outcomeIn, createdAt: now, responseStatus: null, responseBody: null, messageId: null };
  return {
    fingerprint,
    statements: [
      db
        .insert(idempotencyKeys)
        .values({ userId, key, ...fresh })
        .onConflictDoUpdate({
          target: [idempotencyKeys.userId, idempotencyKeys.key],
          set: fresh,
          setWhere: lt(idempotencyKeys.createdAt, now - IDEMPOTENCY_RETENTION_MS),
        }),
      db
        .select({ fingerprint: idempotencyKeys.fingerprint, outcomeIn: idempotencyKeys.outcomeIn })
        .from(idempotencyKeys)
        .where(thisKey),
    ] as const,
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

/** Stores the outcome on the claim unless one is stored already; true when this call stored it. */
async function storeOutcome(db: Database, claim: IdempotencyClaim, outcome: StoredOutcome): Promise<boolean> {
  const stored = await db
    .update(idempotencyKeys)
    .set({ responseStatus: outcome.status, responseBody: outcome.body })
    .where(and(claimIs(claim), isNull(idempotencyKeys.responseStatus)))
    .returning({ key: idempotencyKeys.key })
    .get();
  return stored !== undefined;
}
