import { and, eq, lt, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { createDb, type Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { adminAudit, blocks, users } from "../db/schema";
import type { IndexEntry } from "../durable-objects/wallet/account";
import { directChatIdOf } from "../lib/direct-chat";

/**
 * The D1 side of the account facts (ARCHITECTURE.md §11): the user's object owns status, role and
 * blocks; D1 `users.status/role` and `blocks` are indexes it writes from its outbox
 * (durable-objects/wallet/facts-outbox.ts), for lists.
 * Every write lands only over an older version (`users.facts_version`), so a repeat or a late
 * delivery never undoes a newer one. A suspension's audit row goes in the same batch as its
 * index row (keyed by its own id, so a repeat writes it once).
 */
export async function writeFactsIndex(db: Database, userId: string, entries: readonly IndexEntry[]): Promise<void> {
  const statements = entries.flatMap((entry) => indexStatements(db, userId, entry));
  if (statements.length === 0) return;
  await db.batch(statements as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
}

function indexStatements(db: Database, userId: string, { version, change }: IndexEntry): BatchItem<"sqlite">[] {
  const older = and(eq(users.id, userId), lt(users.factsVersion, version));
  if (change.kind === "status") {
    const update = db
      .update(users)
      .set({
        status: change.status,
        suspendedReason: change.status === "suspended" ? change.reason : null,
        factsVersion: version,
      })
      .where(older);
    if (!change.audit) return [update];
    const { id, actorId, requestId, detail, at } = change.audit;
    const action = change.status === "suspended" ? "suspension" : "reinstatement";
    const audit = db
      .insert(adminAudit)
      .values({ id, actorId, action, targetId: userId, detail: JSON.stringify(detail), requestId, createdAt: at })
      .onConflictDoNothing({ target: adminAudit.id });
    return [audit, update];
  }
  if (change.kind === "role") return [db.update(users).set({ role: change.role, factsVersion: version }).where(older)];
  // A block: the row follows the owner only while the index is older than this version.
  const indexOlder = sql`(SELECT ${users.factsVersion} FROM ${users} WHERE ${users.id} = ${userId}) < ${version}`;
  const pair = and(eq(blocks.blockerId, userId), eq(blocks.blockedId, change.blockedId));
  const write = change.blocked
    ? insertWhere(
        db,
        blocks,
        { blockerId: userId, blockedId: change.blockedId, createdAt: Date.now() },
        undefined,
        indexOlder,
      ).onConflictDoNothing()
    : db.delete(blocks).where(and(pair, indexOlder));
  return [write, db.update(users).set({ factsVersion: version }).where(older)];
}

/** The D1 effects of the account facts, bound to this deployment's database. */
export function accountFactsEffects(env: Env) {
  return {
    writeFactsIndex: (userId: string, entries: readonly IndexEntry[]) => writeFactsIndex(createDb(env.DB), userId, entries),
    directChatOf: (userId: string, otherId: string) => directChatIdOf(userId, otherId),
  };
}
