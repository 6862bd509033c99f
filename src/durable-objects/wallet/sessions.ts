import { type Refusal, refuse } from "../../lib/errors";

/**
 * The user's sessions (ARCHITECTURE.md §11: the user's object owns them, nothing else holds a
 * copy). A session is a refresh-token family: it starts at sign-in, each refresh uses up the
 * presented token and adds the next one, and it ends when revoked (logout, logout-all, a password
 * change, or a used token presented again). Every decision about a family is one `transactionSync`
 * of this object, so a refresh and a revocation are strictly ordered: a refresh that comes second
 * finds the family revoked and adds nothing; one that came first added a token to a family the
 * revocation then ends as a whole. The revocation is a mark on the family, not on its tokens, so no
 * token added at any time can outlive it.
 *
 * Tokens are stored only as SHA-256 (the Worker hashes them; SHA-256 is asynchronous in Workers and
 * a transaction here cannot await). Nothing is purged while it can still matter: a token row until
 * it expires (a used one is what detects the reuse of a stolen token), a family, revoked or not,
 * until its newest token has expired, so a revoked family stays revoked for the whole refresh
 * lifetime of every token it ever had, whatever raced with the revocation.
 *
 * A session id this object never issued (a family purged after it expired, whose access tokens
 * expired 30 days before; a token the test suites or the bench sign themselves) counts as live
 * until something revokes it, which then leaves a revoked mark for it like any other family.
 */
export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/** How late the purge may run after a row has become useless: expired rows gather for a day, then go in one alarm. */
const PURGE_SLACK_MS = 24 * 60 * 60 * 1000;

/** Rows deleted per table per purge; the alarm comes back at once for the rest. */
const PURGE_BATCH = 500;

/** v7 of the wallet object's schema (wallet-schema.ts). */
export const SESSIONS_MIGRATION = `
  CREATE TABLE session_families (
    family_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX session_families_expires ON session_families (expires_at);
  CREATE TABLE session_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  );
  CREATE INDEX session_tokens_expires ON session_tokens (expires_at);
`;

/**
 * Every query the sessions run, named so that test/session-families.test.ts can show each is a
 * primary-key or index lookup, never a scan of the user's sessions.
 */
export const SESSIONS_SQL = {
  family: "SELECT * FROM session_families WHERE family_id = ?",
  token: "SELECT * FROM session_tokens WHERE token_hash = ?",
  startFamily: "INSERT INTO session_families (family_id, created_at, expires_at) VALUES (?, ?, ?)",
  addToken: "INSERT INTO session_tokens (token_hash, family_id, expires_at) VALUES (?, ?, ?)",
  extendFamily: "UPDATE session_families SET expires_at = ? WHERE family_id = ?",
  useToken: "UPDATE session_tokens SET used_at = ? WHERE token_hash = ?",
  liveFamilies: "SELECT family_id FROM session_families WHERE revoked_at IS NULL AND expires_at > ?",
  revoke: `INSERT INTO session_families (family_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (family_id) DO UPDATE SET revoked_at = COALESCE(revoked_at, excluded.revoked_at)`,
  purgeTokens:
    "DELETE FROM session_tokens WHERE rowid IN (SELECT rowid FROM session_tokens WHERE expires_at <= ? LIMIT ?) RETURNING rowid",
  purgeFamilies:
    "DELETE FROM session_families WHERE rowid IN (SELECT rowid FROM session_families WHERE expires_at <= ? LIMIT ?) RETURNING rowid",
  nextExpiry:
    "SELECT MIN(t) AS t FROM (SELECT MIN(expires_at) AS t FROM session_tokens UNION ALL SELECT MIN(expires_at) FROM session_families)",
} as const;

type FamilyRow = { family_id: string; created_at: number; expires_at: number; revoked_at: number | null };
type TokenRow = { token_hash: string; family_id: string; expires_at: number; used_at: number | null };

/** A refresh: the family it continues, or why not (`reusedFamily`: a used token came back and its family is now revoked). */
export type Rotation = { ok: true; familyId: string } | { ok: false; reusedFamily: string | null };

/** The one wording of 401 `session_ended` (services/auth.ts answers it too). */
export const sessionEndedRefusal = (): Refusal =>
  refuse("session_ended", "The session of this access token has ended (logout, password change); sign in again");

export class Sessions {
  constructor(
    private readonly storage: DurableObjectStorage,
    /** Asks for the alarm at `at` (recovery.ts), which runs `purge`. */
    private readonly wakeAt: (at: number) => void,
  ) {}

  /** A new family (sign-in, registration) with its first token. */
  start(familyId: string, tokenHash: string, now: number): void {
    this.storage.transactionSync(() => this.startFamily(familyId, tokenHash, now));
  }

  /**
   * Uses up `presented` and adds `next` to its family, in one transaction. Unknown, expired or of a
   * revoked family: refused. Already used: the family is revoked (reuse of a leaked token, or a
   * client racing itself) and refused.
   */
  rotate(presented: string, next: string, now: number): Rotation {
    return this.storage.transactionSync((): Rotation => {
      const token = this.token(presented);
      const family = token && this.family(token.family_id);
      if (!token || !family || family.revoked_at !== null || token.expires_at <= now) return { ok: false, reusedFamily: null };
      if (token.used_at !== null) {
        this.revoke([family.family_id], now);
        return { ok: false, reusedFamily: family.family_id };
      }
      this.storage.sql.exec(SESSIONS_SQL.useToken, now, presented);
      this.addToken(family.family_id, next, now);
      return { ok: true, familyId: family.family_id };
    });
  }

  /** Logout: revokes the family of `tokenHash` (again, if it was); null for a token this object does not hold. */
  logout(tokenHash: string, now: number): string | null {
    return this.storage.transactionSync(() => {
      const token = this.token(tokenHash);
      if (!token) return null;
      this.revoke([token.family_id], now);
      return token.family_id;
    });
  }

  /**
   * Logout-all: unless the session `callerSession` has ended (401 `session_ended`, nothing
   * revoked), revokes every family still live, the caller's own included. Returns the families
   * this revoked.
   */
  endAll(callerSession: string, now: number): { ok: true; revoked: string[] } | Refusal {
    return this.storage.transactionSync(() => {
      if (!this.isLive(callerSession)) return sessionEndedRefusal();
      return { ok: true as const, revoked: this.revokeAll(callerSession, now) };
    });
  }

  /**
   * A password change (the Worker changed the hash in D1 first): every family revoked, the caller's
   * own included, and the new family the answer carries started, in one transaction. Returns the
   * families this revoked.
   */
  replaceAll(callerSession: string, familyId: string, tokenHash: string, now: number): string[] {
    return this.storage.transactionSync(() => {
      const revoked = this.revokeAll(callerSession, now);
      this.startFamily(familyId, tokenHash, now);
      return revoked;
    });
  }

  /** Whether the session (refresh-token family) `sessionId` has not ended. */
  isLive(sessionId: string): boolean {
    return this.family(sessionId)?.revoked_at == null;
  }

  /**
   * Deletes what can no longer matter: tokens past their expiry, and families (revoked or not)
   * whose every token has expired. Returns when the next purge is due (null: nothing to purge).
   */
  purge(now: number): number | null {
    const sql = this.storage.sql;
    const expired = (query: string) => sql.exec(query, now, PURGE_BATCH).toArray().length;
    const full = this.storage.transactionSync(() => [expired(SESSIONS_SQL.purgeTokens), expired(SESSIONS_SQL.purgeFamilies)]);
    if (full.some((count) => count >= PURGE_BATCH)) return now;
    const next = sql.exec<{ t: number | null }>(SESSIONS_SQL.nextExpiry).one().t;
    return next === null ? null : next + PURGE_SLACK_MS;
  }

  private startFamily(familyId: string, tokenHash: string, now: number): void {
    this.storage.sql.exec(SESSIONS_SQL.startFamily, familyId, now, now + REFRESH_TOKEN_TTL_MS);
    this.addToken(familyId, tokenHash, now);
  }

  private addToken(familyId: string, tokenHash: string, now: number): void {
    const expiresAt = now + REFRESH_TOKEN_TTL_MS;
    this.storage.sql.exec(SESSIONS_SQL.addToken, tokenHash, familyId, expiresAt);
    // The family lasts as long as its newest token.
    this.storage.sql.exec(SESSIONS_SQL.extendFamily, expiresAt, familyId);
    this.wakeAt(expiresAt + PURGE_SLACK_MS);
  }

  /** Every live family revoked, and `callerSession` marked revoked even if this object never issued it. */
  private revokeAll(callerSession: string, now: number): string[] {
    const live = this.storage.sql
      .exec<{ family_id: string }>(SESSIONS_SQL.liveFamilies, now)
      .toArray()
      .map((row) => row.family_id);
    this.revoke([...live, callerSession], now);
    return live;
  }

  /**
   * Marks the families revoked (a family already revoked keeps its first revocation time). One this
   * object never issued gets a mark that lasts a whole refresh lifetime.
   */
  private revoke(familyIds: readonly string[], now: number): void {
    for (const familyId of new Set(familyIds)) {
      this.storage.sql.exec(SESSIONS_SQL.revoke, familyId, now, now + REFRESH_TOKEN_TTL_MS, now);
    }
    this.wakeAt(now + REFRESH_TOKEN_TTL_MS + PURGE_SLACK_MS);
  }

  private token(tokenHash: string): TokenRow | undefined {
    return this.storage.sql.exec<TokenRow>(SESSIONS_SQL.token, tokenHash).toArray()[0];
  }

  private family(familyId: string): FamilyRow | undefined {
    return this.storage.sql.exec<FamilyRow>(SESSIONS_SQL.family, familyId).toArray()[0];
  }
}
