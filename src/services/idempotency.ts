import { and, eq, exists, gte, isNull, lt, not, or, type SQL, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { type Param, preparedPerDatabase } from "../db/prepared";
import { idempotencyKeys } from "../db/schema";
import { ApiError } from "../lib/errors";
import {
  type BatchClaim,
  IDEMPOTENCY_HEADER,
  IDEMPOTENCY_RETENTION_MS,
  type IdempotencyClaim,
  isBatchClaim,
  type KeyClaim,
} from "../lib/idempotency";
import { newId } from "../lib/ids";

export type { BatchClaim, IdempotencyClaim, KeyClaim };

/**
 * `Idempotency-Key` for message-creating POSTs (API.md §1), stored in D1 per caller. The same
 * table registers the keys of transfers and admin grants (`walletKeyRegistration`), so a key
 * belongs to one request per caller across all endpoints.
 *
 * - A fresh key costs no round trip of its own: the send's message batch (one D1 transaction)
 *   inserts the message only while the key has no live row, then writes the key's row with the
 *   message's id and its outcome (a row past retention is taken over): status 201 and the exact
 *   body, whose one part the batch decides, the `seq`, is spliced into a body built before the
 *   batch (`keyClaimStatements`). So the key, the message and the stored outcome commit together
 *   or not at all: no window in which a message exists without its outcome, and the 201 a replay
 *   answers is the bytes the first response carried, whatever happens to the message afterwards
 *   (an edit or delete changes the message, never the stored answer). The first response is that
 *   stored body too (the route's own answer differs only in its timestamp).
 * - When that batch finds the key already held (a duplicate in flight, a stored outcome, another
 *   request's key, a claim left by a request that died) it inserts nothing and the request goes
 *   the claim-first way below, as does a request refused before its batch ran (a rate limit, a
 *   check in the Worker): a stored outcome answers before any other check, and the rate limit
 *   gives back the count of such a request (`retriesClaimFirst`, middlewares/rate-limit.ts), so a
 *   replay is never limited and never counted.
 * - Claim-first: the request claims the key (a row with no response yet), runs, and stores its
 *   success response (status and exact body). Replays answer that status and body verbatim
 *   with `Idempotent-Replayed: true`. The route's step (middlewares/idempotency.ts) runs this
 *   before the rate limit, so a stored outcome answers first (API.md §1).
 * - Same key, different method/path/body (SHA-256 fingerprint of the canonical JSON) → 409
 *   `idempotency_key_reused`.
 * - Anything the request throws (400/403/404/429 refusals before it executed, 5xx) releases the
 *   claim, so a corrected retry with the same key runs; a refusal named by the batch leaves no
 *   claim from the batch itself.
 * - A claim-first execution records the message it creates on its claim in the message's own
 *   insert batch (`recordMessageOnClaim`). A claim with a message but no stored response belongs
 *   to a request whose write committed but that died (or failed) before storing its response: a
 *   retry answers that message (201, via `resume`, stored for later replays) instead of executing
 *   again, so a key never posts two messages. Such a claim is never released.
 * - A duplicate arriving while the first is in flight polls until the first finishes (and replays
 *   it) or gives up (and runs itself). It waits up to WAIT_MS; a claim older than STALE_MS with no
 *   response belongs to a request that died, and is taken over. A key still in flight after the
 *   wait answers 409 `idempotency_key_reused` ("still in progress; retry").
 * - Keys are kept RETENTION_MS (24 h); the cron purges expired ones daily (services/maintenance.ts), and a
 *   claim takes over an expired row of its own key (a claim-first request also purges them).
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

/** Thrown by a message batch that found its key held by another request: it inserted nothing, the key decides the answer. */
export class KeyHeldError extends Error {
  constructor() {
    super("the Idempotency-Key is held by another request");
    this.name = "KeyHeldError";
  }
}

/** A claim for the request's own batch to take (see the module comment). */
export function newBatchClaim(request: IdempotentRequest, now: number = Date.now()): BatchClaim {
  return { ...request, claimedAt: now, messageId: newId(now), batch: "unsent", held: false, outcome: null };
}

/**
 * Whether a request that threw `error` while its batch claim was out goes the claim-first way:
 * its batch found the key held, or it was refused before its batch ran (so nothing of it
 * happened, and the key must be looked at before that refusal stands).
 */
export function retriesClaimFirst(claim: KeyClaim | null, error: unknown): boolean {
  return error instanceof KeyHeldError || (isBatchClaim(claim) && claim.batch === "unsent");
}

/**
 * What a batch claim's SQL binds, each a value or a named placeholder (a send prepared once per
 * database binds them per call): the claim's own fields, and the time before which keys expired.
 */
export type BatchClaimSql = {
  userId: Param<string>;
  key: Param<string>;
  fingerprint: Param<string>;
  claimedAt: Param<number>;
  messageId: Param<string>;
  expiredBefore: Param<number>;
};

/** The values of `claim` for its SQL (the names of `BatchClaimSql`). */
export function batchClaimValues(claim: BatchClaim) {
  const { userId, key, fingerprint, claimedAt, messageId } = claim;
  return { userId, key, fingerprint, claimedAt, messageId, expiredBefore: claimedAt - IDEMPOTENCY_RETENTION_MS };
}

const batchClaimRow = (claim: Pick<BatchClaimSql, "userId" | "key" | "messageId">) =>
  and(
    eq(idempotencyKeys.userId, claim.userId),
    eq(idempotencyKeys.key, claim.key),
    eq(idempotencyKeys.messageId, claim.messageId),
  );

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

/** SQL: the key has a row within retention (a live claim or outcome; an older row may be taken over). */
const liveKeySql = (db: Database, claim: Pick<BatchClaimSql, "userId" | "key" | "expiredBefore">) =>
  exists(
    db
      .select({ one: sql`1` })
      .from(idempotencyKeys)
      .where(
        and(
          eq(idempotencyKeys.userId, claim.userId),
          eq(idempotencyKeys.key, claim.key),
          gte(idempotencyKeys.createdAt, claim.expiredBefore),
        ),
      ),
  );

/**
 * SQL, true inside a batch claim's batch while its key is free (no live row): every write of the
 * send carries it, so a request whose key is held changes nothing. Undefined for no claim or a
 * claim already held (claim-first).
 */
export function keyFreeInBatchSql(db: Database, claim: KeyClaim | BatchClaimSql | null | undefined): SQL | undefined {
  if (!claim || !("messageId" in claim)) return undefined;
  return not(liveKeySql(db, "expiredBefore" in claim ? claim : batchClaimValues(claim)));
}

/**
 * The key's part of its message batch (one transaction), around the message's writes, which
 * carry `free` (`keyFreeInBatchSql`):
 * - `claim`, after the message's insert: when a message was inserted (`message.messageId`: SQL,
 *   NULL when not) the key's row is written with it and its `outcome` (status and body as SQL);
 *   when none was but `kept` holds (a same message answers the request) the row is a claim with
 *   no outcome, for the request to store its answer on; otherwise nothing is written (a refusal
 *   leaves no key; a row of the key past retention stays as it was, for the cron, and counts as
 *   free). A row of the key past retention is taken over; a live one is left alone.
 *   It returns the row only when this request wrote it.
 * - `live`, for the batch's last read: whether the key has a live row after `claim`.
 * - `read(claim, claimRows, live)`: throws KeyHeldError when the key was held by another request
 *   (nothing of this one was written), and reports `held` and `outcome` on the claim.
 * `claim` is values or placeholders (`BatchClaimSql`), so the statements can be prepared once.
 */
export function keyClaimStatements(
  db: Database,
  claim: BatchClaimSql,
  message: { messageId: SQL; kept: SQL | undefined; outcome: { status: number; body: SQL } },
) {
  const { userId, key, fingerprint, claimedAt, expiredBefore } = claim;
  const posted = sql`${message.messageId} IS NOT NULL`;
  const claimed = insertWhere(
    db,
    idempotencyKeys,
    {
      userId,
      key,
      fingerprint,
      responseStatus: sql`CASE WHEN ${posted} THEN ${message.outcome.status} END`,
      responseBody: sql`CASE WHEN ${posted} THEN ${message.outcome.body} END`,
      messageId: message.messageId,
      outcomeIn: null,
      createdAt: claimedAt,
    },
    undefined,
    message.kept ? or(posted, message.kept)! : posted,
  )
    .onConflictDoUpdate(replacesExpiredKeyRow(expiredBefore))
    .returning({ responseStatus: idempotencyKeys.responseStatus, responseBody: idempotencyKeys.responseBody });
  return { free: keyFreeInBatchSql(db, claim)!, claim: claimed, live: liveKeySql(db, claim).mapWith(Boolean) };
}

/** Reads what a batch claim's statements (`keyClaimStatements`) answered onto the claim; KeyHeldError when the key was held. */
export function readKeyClaim(
  claim: BatchClaim,
  claimRows: readonly { responseStatus: number | null; responseBody: string | null }[],
  live: boolean,
): void {
  claim.batch = "done";
  const row = claimRows[0];
  if (row === undefined && live) throw new KeyHeldError();
  claim.held = row !== undefined;
  claim.outcome =
    row?.responseStatus != null && row.responseBody != null ? { status: row.responseStatus, body: row.responseBody } : null;
}

/**
 * Replaces the body stored with a batch claim's message: for a body built before the batch that
 * turned out not to be the message as stored (checked after every batch; not expected to happen).
 */
export async function restoreBatchOutcome(db: Database, claim: BatchClaim, body: string): Promise<void> {
  await db.update(idempotencyKeys).set({ responseBody: body }).where(batchClaimRow(claim));
  claim.outcome = claim.outcome && { ...claim.outcome, body };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `execute` at most once per (caller, key): a stored outcome is answered first (`replay`),
 * before `execute` and anything it checks; otherwise `execute` runs holding the claim and its
 * result is returned (`fresh`). `execute` is first given a claim for its batch to take (a fresh
 * key: one round trip); when that batch finds the key held, or the request is refused before its
 * batch ran, it runs again the claim-first way. `stored` is the outcome stored with the message
 * (the request's answer, byte for byte), or null. `outcomeOf` says what to store of a result
 * whose outcome was not stored with it: null (not an executed outcome, e.g. a refusal answered
 * without throwing) releases the claim like a throw does. `resume` rebuilds the outcome of a
 * claim whose message committed but whose response was never stored.
 */
export async function idempotent<R>(
  db: Database,
  request: IdempotentRequest,
  execute: (claim: KeyClaim) => Promise<R>,
  outcomeOf: (result: R) => Promise<StoredOutcome | null>,
  resume: (messageId: string) => Promise<StoredOutcome>,
): Promise<{ replay: StoredOutcome } | { fresh: R; stored: StoredOutcome | null }> {
  const claim = newBatchClaim(request);
  const held: IdempotencyClaim = { userId: claim.userId, key: claim.key, claimedAt: claim.claimedAt };
  let result: R;
  try {
    result = await execute(claim);
  } catch (error) {
    if (retriesClaimFirst(claim, error)) return claimFirst(db, request, execute, outcomeOf, resume);
    // A batch that failed may have committed or not; one that kept the claim has an answer never stored.
    if (claim.batch === "sent" || claim.held) await release(db, held);
    throw error;
  }
  if (claim.outcome !== null) return { fresh: result, stored: claim.outcome };
  const outcome = await outcomeOf(result);
  if (claim.batch === "unsent" && outcome !== null)
    throw new Error("an idempotent send answered without its batch claiming the key");
  if (claim.held) {
    if (outcome === null) await release(db, held);
    else await storeOutcome(db, held, outcome);
  }
  return { fresh: result, stored: null };
}

/** Deletes a claim that has neither a stored response nor a message: its request stored nothing. */
const release = (db: Database, claim: IdempotencyClaim) =>
  db
    .delete(idempotencyKeys)
    .where(and(claimIs(claim), isNull(idempotencyKeys.responseStatus), isNull(idempotencyKeys.messageId)))
    .catch(() => undefined);

/** The claim-first way (see the module comment): claim, wait, replay, take over, or 409. */
async function claimFirst<R>(
  db: Database,
  request: IdempotentRequest,
  execute: (claim: KeyClaim) => Promise<R>,
  outcomeOf: (result: R) => Promise<StoredOutcome | null>,
  resume: (messageId: string) => Promise<StoredOutcome>,
): Promise<{ replay: StoredOutcome } | { fresh: R; stored: null }> {
  const { userId, key, fingerprint } = request;
  const thisKey = and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, key));
  const deadline = Date.now() + WAIT_MS;

  for (let attempt = 0; ; attempt++) {
    const now = Date.now();
    // Only this key's own row past retention is taken over (the daily purge removes the rest): a
    // request never deletes other callers' keys, so its work is bounded whatever the table holds.
    const claimedRows = await db
      .insert(idempotencyKeys)
      .values({
        userId,
        key,
        fingerprint,
        responseStatus: null,
        responseBody: null,
        messageId: null,
        outcomeIn: null,
        createdAt: now,
      })
      .onConflictDoUpdate(replacesExpiredKeyRow(now - IDEMPOTENCY_RETENTION_MS))
      .returning();
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
    let result: R;
    try {
      result = await execute(claim);
    } catch (error) {
      await release(db, claim);
      throw error;
    }
    const outcome = await outcomeOf(result);
    if (outcome === null) await release(db, claim);
    else await storeOutcome(db, claim, outcome);
    return { fresh: result, stored: null };
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

/** The two statements of `walletKeyRegistration`, built once per database (they run on every keyed transfer and grant). */
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

/**
 * Whether the caller holds `key` (a live row: an outcome stored, or a request with it in flight),
 * whichever endpoint used it. A request refused by a coarse budget asks this first, so a retry of
 * a request that executed still gets its stored answer (API.md §1: a stored outcome answers first).
 */
export async function holdsKey(db: Database, userId: string, key: string, now: number = Date.now()): Promise<boolean> {
  const row = await db
    .select({ key: idempotencyKeys.key })
    .from(idempotencyKeys)
    .where(
      and(
        eq(idempotencyKeys.userId, userId),
        eq(idempotencyKeys.key, key),
        gte(idempotencyKeys.createdAt, now - IDEMPOTENCY_RETENTION_MS),
      ),
    )
    .get();
  return row !== undefined;
}
