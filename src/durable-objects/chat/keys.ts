import { and, eq, lt, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { type chatSchema, type SendKeyRow, sendKeys } from "./chat-schema";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/** Keys expired per alarm, so one wake-up stays short however many expire at once. */
const EXPIRY_BATCH = 500;

/**
 * The stored outcomes of keyed sends into this chat (API.md §1): written in the same transaction
 * as the message they answer for, so a key and its message commit together or not at all; a
 * replay answers the stored status and body byte for byte. A key's scope is its sender's sends
 * into this chat (API.md §1), so this is the only place it is kept: a send refused or failed
 * stores nothing, and a corrected retry with the same key runs.
 */
export class SendKeys {
  private readonly findKey;

  constructor(private readonly db: Db) {
    this.findKey = db
      .select()
      .from(sendKeys)
      .where(and(eq(sendKeys.userId, sql.placeholder("userId")), eq(sendKeys.key, sql.placeholder("key"))))
      .prepare();
  }

  /** The live outcome of `key` for `userId` (one past retention counts as none). */
  find(userId: string, key: string, now: number): SendKeyRow | undefined {
    const row = this.findKey.get({ userId, key });
    return row && row.createdAt >= now - IDEMPOTENCY_RETENTION_MS ? row : undefined;
  }

  /** Stores an outcome; an expired row of the same key is replaced. */
  store(row: SendKeyRow): void {
    this.db
      .insert(sendKeys)
      .values(row)
      .onConflictDoUpdate({
        target: [sendKeys.userId, sendKeys.key],
        set: {
          fingerprint: row.fingerprint,
          status: row.status,
          body: row.body,
          messageId: row.messageId,
          createdAt: row.createdAt,
        },
        setWhere: lt(sendKeys.createdAt, row.createdAt - IDEMPOTENCY_RETENTION_MS),
      })
      .run();
  }

  /** Deletes a bounded batch of expired outcomes; returns when the next one expires (null: none left). */
  expire(now: number): number | null {
    const before = now - IDEMPOTENCY_RETENTION_MS;
    this.db
      .delete(sendKeys)
      .where(
        sql`rowid IN (SELECT rowid FROM ${sendKeys} WHERE ${sendKeys.createdAt} < ${before} ORDER BY ${sendKeys.createdAt} LIMIT ${EXPIRY_BATCH})`,
      )
      .run();
    const oldest = this.db
      .select({ at: sql<number | null>`min(${sendKeys.createdAt})` })
      .from(sendKeys)
      .get()?.at;
    return oldest === null || oldest === undefined ? null : oldest + IDEMPOTENCY_RETENTION_MS;
  }
}
