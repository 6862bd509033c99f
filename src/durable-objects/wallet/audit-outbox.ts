import { log } from "../../lib/log";
import type { AuditOutboxEntry, ProtocolHooks, WalletEffects } from "./effects";
import { withTimeout } from "./finisher";
import type { AuditOutboxRow } from "./wallet-schema";
import { CALL_TIMEOUT_MS, MAX_RETRY_DELAY_MS } from "./wallet-types";

/** The first retry of an audit row whose delivery failed (or whose deliverer died); doubling after. */
export const AUDIT_RETRY_MS = 1_000;

/** Audit rows one delivery sends at most (one D1 batch); the alarm comes back for the rest. */
const AUDIT_PAGE = 50;

/**
 * The audit rows of what this object did (admin grants, the operator's role changes), on their
 * way to the D1 audit log (API.md: "an action and its audit row are recorded together"). A row is
 * written in the same transaction as its action, so there is no grant or role change without its row; it is then delivered at once
 * and, until D1 acknowledges it, again by the alarm, backing off, with no maximum number of
 * attempts. Delivery is idempotent (the D1 row's id is the entry's own), so a row sent twice, by a
 * request and the alarm at once, is recorded once.
 */
export class AuditOutbox {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly effects: Pick<WalletEffects, "recordAudit">,
    private readonly hooks: ProtocolHooks,
    /** Asks for the alarm at `at` (the retry of a row not yet acknowledged). */
    private readonly wakeAt: (at: number) => void,
  ) {}

  /** Inside the action's transaction: the row, due now, and the alarm that delivers it if nobody else does. */
  add(entry: AuditOutboxEntry, now: number): void {
    this.storage.sql.exec(
      "INSERT INTO audit_outbox (id, entry, attempts, retry_at) VALUES (?, ?, 0, ?)",
      entry.id,
      JSON.stringify(entry),
      now,
    );
    this.wakeAt(now + AUDIT_RETRY_MS);
  }

  /** Delivers the rows due by `now` (a page); acknowledged rows go, the others back off. Never throws. */
  async deliver(now: number): Promise<void> {
    const sql = this.storage.sql;
    const rows = sql
      .exec<AuditOutboxRow>("SELECT * FROM audit_outbox WHERE retry_at <= ? ORDER BY retry_at LIMIT ?", now, AUDIT_PAGE)
      .toArray();
    if (rows.length === 0) return;
    const ids = rows.map((row) => row.id);
    const marks = ids.map(() => "?").join(", ");
    try {
      const entries = rows.map((row) => JSON.parse(row.entry) as AuditOutboxEntry);
      await withTimeout(this.effects.recordAudit(entries), CALL_TIMEOUT_MS, `the audit log (${rows.length} rows)`);
      sql.exec(`DELETE FROM audit_outbox WHERE id IN (${marks})`, ...ids);
    } catch (error) {
      log.error("audit_delivery_failed", { ids, error });
      const later = this.hooks.now();
      for (const row of rows) {
        const retryAt = later + Math.min(AUDIT_RETRY_MS * 2 ** Math.min(row.attempts, 10), MAX_RETRY_DELAY_MS);
        sql.exec("UPDATE audit_outbox SET attempts = attempts + 1, retry_at = ? WHERE id = ?", retryAt, row.id);
      }
    }
    const next = this.nextAt();
    if (next !== null) this.wakeAt(next);
  }

  /** When the next row is due (null: nothing waits). */
  nextAt(): number | null {
    return this.storage.sql.exec<{ t: number | null }>("SELECT MIN(retry_at) AS t FROM audit_outbox").one().t;
  }
}
