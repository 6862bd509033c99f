import { getTableColumns, is, type Placeholder, SQL, sql } from "drizzle-orm";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";
import type { Database } from "./client";

/**
 * Every column of the row, each a value, a named placeholder (a query prepared once per database)
 * or an SQL expression (which may read the `from` table).
 */
export type RowExpressions<T extends SQLiteTable> = {
  [K in keyof T["$inferInsert"]]-?: T["$inferInsert"][K] | Placeholder | SQL;
};

/**
 * `INSERT INTO table (…every column…) SELECT <row> [FROM <from>] WHERE <where>`: the row is written
 * only where `where` holds, checked by the same statement. Inside a D1 batch (one transaction) that
 * lets a write carry its own preconditions instead of costing a read round trip before it.
 * Every column is listed explicitly, in the table's order, as Drizzle's INSERT … SELECT requires.
 */
export function insertWhere<T extends SQLiteTable>(
  db: Database,
  table: T,
  row: RowExpressions<T>,
  from: SQL | undefined,
  where: SQL,
) {
  const values = Object.entries(getTableColumns(table)).map(([key, column]) => {
    const value = (row as Record<string, unknown>)[key];
    return is(value, SQL) ? value : sql.param(value ?? null, column);
  });
  const source = from === undefined ? sql`` : sql` FROM ${from}`;
  return db.insert(table).select(sql`SELECT ${sql.join(values, sql`, `)}${source} WHERE ${where}`);
}
