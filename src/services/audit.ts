import { and, desc, eq, lt, or, type SQL } from "drizzle-orm";
import { z } from "zod";
import { inChunks, rowsPerStatement } from "../db/bound-parameters";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { adminAudit } from "../db/schema";
import type { AuditOutboxEntry } from "../durable-objects/wallet/effects";
import { decodeCursor, toPage } from "../lib/cursor";
import { newId } from "../lib/ids";
import type { AuditAction, AuditDetail, AuditEntry } from "../schemas/audit";

/**
 * The admin audit log (API.md: GET /api/v1/admin/audit): every grant, suspension, reinstatement
 * and reconciliation start, with who did it and the request that did. Each is written in the same
 * D1 batch as the action where the action is in D1 (suspensions, reconciliation starts); a grant,
 * whose money is in the user's object, goes into that object's audit outbox in the grant's own
 * transaction and is delivered from there until D1 acknowledges it (`recordAuditEntries`).
 */

/** The admin acting and the request they act through (the server's own request id, never the client's header). */
export type AuditActor = { actorId: string; requestId: string };

export type AuditRecord = { id?: string; action: AuditAction; targetId: string; detail: AuditDetail };

/** The audit row of an action, as an INSERT to run in the action's own batch. */
export function auditInsert(db: Database, actor: AuditActor, record: AuditRecord, now = Date.now()) {
  return db.insert(adminAudit).values(auditRow(actor, record, now));
}

const auditRow = (actor: AuditActor, record: AuditRecord, now: number) => ({
  id: record.id ?? newId(now),
  actorId: actor.actorId,
  action: record.action,
  targetId: record.targetId,
  detail: JSON.stringify(record.detail),
  requestId: actor.requestId,
  createdAt: now,
});

/** `auditInsert` written only where `where` holds, checked by the same statement (in the action's batch). */
export function auditInsertWhere(db: Database, actor: AuditActor, record: AuditRecord, where: SQL, now = Date.now()) {
  return insertWhere(db, adminAudit, auditRow(actor, record, now), undefined, where);
}

/**
 * Writes audit rows an object kept in its outbox (a grant's, written in the grant's transaction
 * in the user's object): one batch, idempotent by id, so a row delivered twice is recorded once.
 * Throws when D1 refuses, and the object keeps the rows and retries.
 */
export async function recordAuditEntries(db: Database, entries: readonly AuditOutboxEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map(({ id, actorId, requestId, action, targetId, detail, createdAt }) =>
    auditRow({ actorId, requestId }, { id, action, targetId, detail }, createdAt),
  );
  // D1 binds at most 100 parameters per statement: the rows go in chunks, in one batch.
  const [first, ...rest] = inChunks(rows, rowsPerStatement(7)).map((chunk) =>
    db.insert(adminAudit).values(chunk).onConflictDoNothing({ target: adminAudit.id }),
  );
  await db.batch([first!, ...rest]);
}

const auditCursorShape = z.object({ t: z.number().int(), i: z.string() });

/** Newest first, by (created_at, id) on `admin_audit_created_idx`. */
export async function listAudit(
  db: Database,
  query: { limit: number; cursor?: string | undefined },
): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
  let where: SQL | undefined;
  if (query.cursor) {
    const after = decodeCursor(query.cursor, auditCursorShape);
    where = or(lt(adminAudit.createdAt, after.t), and(eq(adminAudit.createdAt, after.t), lt(adminAudit.id, after.i)));
  }
  const rows = await db
    .select()
    .from(adminAudit)
    .where(where)
    .orderBy(desc(adminAudit.createdAt), desc(adminAudit.id))
    .limit(query.limit + 1);
  return toPage(
    rows,
    query.limit,
    (row) => ({ ...row, detail: JSON.parse(row.detail) as AuditDetail, createdAt: new Date(row.createdAt).toISOString() }),
    (row) => ({ t: row.createdAt, i: row.id }),
  );
}
