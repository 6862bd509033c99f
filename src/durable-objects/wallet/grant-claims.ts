import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { type GrantClaimRow, RECOVERY_SQL } from "./wallet-schema";

/**
 * An admin's grant keys, kept in the ADMIN's object (API.md §1: one scope per admin for grants).
 * The grant itself, its stored 201 and its audit row stay in the granted user's object (grants.ts,
 * one transaction); this table only says which user and which request each key of the admin
 * names, so the same key for another user or another body is 409 `idempotency_key_reused`
 * wherever that user's object is. The Worker (services/wallets.ts) claims the key here before the
 * grant, settles it after a 201 and releases it after a refusal or failure (nothing is stored then).
 */

/**
 * A pending claim older than this no longer blocks another request: longer than any grant call
 * (a D1 user lookup, the target's one transaction and its audit delivery), so only a request that
 * died before settling or releasing leaves one this old.
 */
export const CLAIM_PENDING_MS = 60_000;

/**
 * A claim is settled just after its grant, and the target keeps the grant's key 24 h from the
 * grant: the claim outlives it by this, so another body is never let through while the target
 * still replays the first.
 */
export const CLAIM_MARGIN_MS = 60_000;

/** `hold`: claim the key (false: a request that will be refused anyway only reads; it never executes). */
export type GrantClaimRequest = {
  key: string;
  targetId: string;
  fingerprint: string;
  hold: boolean;
  /** The token of a stale claim the caller has checked (its target has no outcome for it): replace it. */
  replacing: string | null;
};

/**
 * `go`: on to the target (`token`: this request holds a new claim and must settle or release it);
 * `reused`: the key names another user or body; `stale`: a pending claim of another request,
 * too old to be running, whose target the caller asks before claiming again with `replacing`.
 */
export type GrantClaimAnswer =
  | { kind: "go"; token: string | null }
  | { kind: "reused" }
  | { kind: "stale"; token: string; targetId: string; fingerprint: string };

export class GrantClaims {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly wakeAt: (at: number) => void,
  ) {}

  claim(request: GrantClaimRequest, now: number): GrantClaimAnswer {
    return this.storage.transactionSync((): GrantClaimAnswer => {
      const row = this.row(request.key);
      const replaceable = !row || (request.replacing !== null && row.token === request.replacing);
      if (replaceable) return request.hold ? { kind: "go", token: this.take(request, now) } : { kind: "go", token: null };
      // The same user and body: the target replays or (in flight) serializes the two; nothing to hold.
      if (row.target_id === request.targetId && row.fingerprint === request.fingerprint) return { kind: "go", token: null };
      if (row.state === "done" || now - row.claimed_at < CLAIM_PENDING_MS) return { kind: "reused" };
      // A request that died holding the key may still have granted: the caller asks its target first.
      if (!request.hold) return { kind: "go", token: null };
      return { kind: "stale", token: row.token, targetId: row.target_id, fingerprint: row.fingerprint };
    });
  }

  /**
   * The target answered a business outcome (its 201, fresh or replayed): the key is done, kept from
   * now (a replay keeps the first end). A claim taken over since by another request is left alone.
   */
  settle(key: string, targetId: string, fingerprint: string, now: number): void {
    const row = this.row(key);
    if (row && (row.target_id !== targetId || row.fingerprint !== fingerprint)) return;
    this.storage.sql.exec(
      `INSERT INTO grant_claims (idempotency_key, target_id, fingerprint, token, state, claimed_at, kept_from)
       VALUES (?, ?, ?, ?, 'done', ?, ?)
       ON CONFLICT (idempotency_key) DO UPDATE SET
         kept_from = CASE WHEN state = 'done' THEN kept_from ELSE excluded.kept_from END, state = 'done'`,
      key,
      targetId,
      fingerprint,
      crypto.randomUUID(),
      now,
      now,
    );
    this.wakeAt(now + IDEMPOTENCY_RETENTION_MS + CLAIM_MARGIN_MS);
  }

  /** Refused before execution or failed (5xx): nothing is stored, so the key is free again. Only its holder frees it. */
  release(key: string, token: string): void {
    this.storage.sql.exec("DELETE FROM grant_claims WHERE idempotency_key = ? AND token = ? AND state = 'pending'", key, token);
  }

  /** From the alarm: claims past retention, a bounded batch (the alarm comes back for the rest). */
  expire(now: number, batch: number): void {
    this.storage.sql.exec(RECOVERY_SQL.expireGrantClaims, now - IDEMPOTENCY_RETENTION_MS - CLAIM_MARGIN_MS, batch);
  }

  /** When the oldest claim expires (null: none). */
  nextExpiryAt(): number | null {
    const oldest = this.storage.sql.exec<{ t: number | null }>(RECOVERY_SQL.oldestGrantClaim).one().t;
    return oldest === null ? null : oldest + IDEMPOTENCY_RETENTION_MS + CLAIM_MARGIN_MS + 1;
  }

  private take(request: GrantClaimRequest, now: number): string {
    const token = crypto.randomUUID();
    this.storage.sql.exec(
      `INSERT OR REPLACE INTO grant_claims (idempotency_key, target_id, fingerprint, token, state, claimed_at, kept_from)
       VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
      request.key,
      request.targetId,
      request.fingerprint,
      token,
      now,
      now,
    );
    // A claim never settled nor released (its request died) is expired like a settled one.
    this.wakeAt(now + IDEMPOTENCY_RETENTION_MS + CLAIM_MARGIN_MS);
    return token;
  }

  private row(key: string): GrantClaimRow | undefined {
    return this.storage.sql.exec<GrantClaimRow>("SELECT * FROM grant_claims WHERE idempotency_key = ?", key).toArray()[0];
  }
}
