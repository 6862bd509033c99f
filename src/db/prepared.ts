import { fillPlaceholders, type Placeholder } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Database } from "./client";

/**
 * Queries built once per database with named placeholders (`sql.placeholder`) and bound per call.
 * Drizzle builds a query's SQL again on every call (its `is()` walks class chains on every node),
 * which was the largest share of the hot reads' thread time under load (bench/README.md), and its
 * `batch()` takes only builders, which it builds again. `batchPrepared` hands `batch()` an item that only
 * binds the values to the statement prepared once, and maps the rows with that query's own mapping
 * (Drizzle's batch protocol: `_prepare()` → `getQuery()`, `stmt`, `mapResult(result, true)`).
 */

/** A value, or the named placeholder (`sql.placeholder`) of a query prepared once. */
export type Param<T> = T | Placeholder;

/** `prepare(db)`, run once per database (createDb gives one per D1 binding). */
export function preparedPerDatabase<T>(prepare: (db: Database) => T): (db: Database) => T {
  const prepared = new WeakMap<Database, T>();
  return (db) => {
    let queries = prepared.get(db);
    if (!queries) {
      queries = prepare(db);
      prepared.set(db, queries);
    }
    return queries;
  };
}

/** What `.prepare()` gives on D1: the query with its placeholders, the D1 statement, the row mapping. */
type PreparedQuery = {
  getQuery(): { sql: string; params: unknown[] };
  mapResult(response: unknown, isFromBatch?: boolean): unknown;
  execute(placeholderValues?: Record<string, unknown>): Promise<unknown>;
};

/**
 * One D1 batch (one round trip, one transaction) of queries prepared once, bound to `values`: one
 * set of named values for the whole batch, or one per query (a query repeated with other values);
 * the results in their order, typed as each query answers.
 */
export async function batchPrepared<T extends readonly PreparedQuery[]>(
  db: Database,
  queries: T,
  values: Record<string, unknown> | readonly Record<string, unknown>[],
): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]["execute"]>> }> {
  if (Array.isArray(values) && values.length !== queries.length) {
    throw new Error(`batchPrepared: ${queries.length} queries but ${values.length} sets of values`);
  }
  const valuesOf = (i: number) =>
    Array.isArray(values) ? (values[i] as Record<string, unknown>) : (values as Record<string, unknown>);
  const items = queries.map((prepared, i) => {
    const bound = valuesOf(i);
    // `stmt` is Drizzle's D1 statement for the query (not in its public types); `bind` copies it.
    const { stmt } = prepared as unknown as { stmt: D1PreparedStatement };
    const { sql, params } = prepared.getQuery();
    return {
      _prepare: () => ({
        getQuery: () => ({ sql, params: fillPlaceholders(params, bound) }),
        stmt,
        mapResult: (response: unknown, isFromBatch?: boolean) => prepared.mapResult(response, isFromBatch),
      }),
    };
  });
  const results = await db.batch(items as unknown as [BatchItem<"sqlite">]);
  return results as unknown as { -readonly [K in keyof T]: Awaited<ReturnType<T[K]["execute"]>> };
}
