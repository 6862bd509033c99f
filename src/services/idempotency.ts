import { and, eq, isNull, lt, type SQL } from "drizzle-orm";
import type { Context } from "hono";
import { createDb, type Database } from "../db/client";
import { idempotencyKeys } from "../db/schema";
import { type SuccessEnvelope, successBody } from "../lib/envelope";
import { ApiError } from "../lib/errors";
import {
  IDEMPOTENCY_HEADER,
  IDEMPOTENCY_RETENTION_MS,
  parseIdempotencyKey,
  REPLAYED_HEADER,
  requestFingerprint,
} from "../lib/idempotency";
import type { AppEnv } from "../lib/types";

/**
 * `Idempotency-Key` for message-creating POSTs (API.md §1), stored in D1 per caller. The same
 * table registers the keys of transfers and admin grants (`walletKeyRegistration`), so a key
 * belongs to one request per caller across all endpoints.
 *
 * - The first request with a key claims it (a row with no response yet), runs, and stores its
 *   success envelope. Replays answer that status and body verbatim with `Idempotent-Replayed: true`.
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

export type IdempotentResult<T, S extends number> = { status: S; body: SuccessEnvelope<T, S>; replayed: boolean };

/** The claim a request holds on its key while it executes (the row `createdAt` identifies this holder). */
export type IdempotencyClaim = { userId: string; key: string; claimedAt: number };

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
 * Runs `execute` at most once per (caller, Idempotency-Key). Without the header it simply runs.
 * Answer with `respondIdempotent(c, result)`.
 */
export async function idempotent<T, S extends 200 | 201>(
  c: Context<AppEnv>,
  userId: string,
  execute: (claim: IdempotencyClaim | null) => Promise<{ data: T; status: S }>,
  resume: (messageId: string) => Promise<{ data: T; status: S }>,
): Promise<IdempotentResult<T, S>> {
  const key = parseIdempotencyKey(c.req.header(IDEMPOTENCY_HEADER));
  if (key === undefined) {
    const { data, status } = await execute(null);
    return { status, body: successBody(data, status), replayed: false };
  }
  const db = createDb(c.env.DB);
  const body: unknown = await c.req.json().catch(() => null);
  const fingerprint = await requestFingerprint(c.req.method, new URL(c.req.url).pathname, body);
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
        return { status: row.responseStatus as S, body: JSON.parse(row.responseBody) as SuccessEnvelope<T, S>, replayed: true };
      }
      if (row.messageId !== null) {
        // Its message committed; only the response is missing. Answer it and store it (first store wins).
        const outcome = await resume(row.messageId);
        const envelope = successBody(outcome.data, outcome.status);
        const stored = await storeResponse(db, { userId, key, claimedAt: row.createdAt }, outcome.status, envelope);
        if (stored) return { status: outcome.status, body: envelope, replayed: true };
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
    let outcome: { data: T; status: S };
    try {
      outcome = await execute(claim);
    } catch (error) {
      await db
        .delete(idempotencyKeys)
        .where(and(claimIs(claim), isNull(idempotencyKeys.responseStatus), isNull(idempotencyKeys.messageId)))
        .catch(() => undefined);
      throw error;
    }
    const envelope = successBody(outcome.data, outcome.status);
    await storeResponse(db, claim, outcome.status, envelope);
    return { status: outcome.status, body: envelope, replayed: false };
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

/** Stores the response on the claim unless one is stored already; true when this call stored it. */
async function storeResponse(db: Database, claim: IdempotencyClaim, status: number, envelope: unknown): Promise<boolean> {
  const stored = await db
    .update(idempotencyKeys)
    .set({ responseStatus: status, responseBody: JSON.stringify(envelope) })
    .where(and(claimIs(claim), isNull(idempotencyKeys.responseStatus)))
    .returning({ key: idempotencyKeys.key })
    .get();
  return stored !== undefined;
}

/** Answers an idempotent result: the (stored) envelope, plus `Idempotent-Replayed: true` on a replay. */
export function respondIdempotent<T, S extends 200 | 201>(c: Context<AppEnv>, result: IdempotentResult<T, S>) {
  if (result.replayed) c.header(REPLAYED_HEADER, "true");
  return c.json(result.body, result.status);
}
