import { and, desc, eq, lt, or, type SQL } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { adminAudit } from "../db/schema";
import { decodeCursor, toPage } from "../lib/cursor";
import { newId } from "../lib/ids";
import { log } from "../lib/log";
import type { AuditAction, AuditDetail, AuditEntry } from "../schemas/audit";

/**
 * The admin audit log (API.md: GET /api/v1/admin/audit): every grant, suspension, reinstatement
 * and reconciliation start, with who did it and the request that did. Each is written in the same
 * D1 batch as the action where the action is in D1 (suspensions, reconciliation starts); a grant,
 * whose money is in the wallet object, right after the wallet applied it, under the grant's id.
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
 * Records a grant the wallet answered with 201 (fresh or replayed). The row's id is the grant's,
 * and a second write of it does nothing, so a replay of the grant's Idempotency-Key never records it twice (and
 * writes the row if the first request died between the wallet and here).
 */
export async function recordGrant(
  db: Database,
  actor: AuditActor,
  grant: { grantId: string; userId: string; amount: number },
  reason: string,
): Promise<void> {
  const record: AuditRecord = {
    id: grant.grantId,
    action: "grant",
    targetId: grant.userId,
    detail: { amount: grant.amount, reason },
  };
  try {
    await auditInsert(db, actor, record).onConflictDoNothing({ target: adminAudit.id });
  } catch (error) {
    // The credits moved: a 500 now would tell a client without a key to grant again. The log line
    // carries the whole entry, and a replay of the grant's key writes the row.
    log.error("audit_write_failed", { ...actor, ...record, error });
  }
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
