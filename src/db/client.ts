import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Database = ReturnType<typeof buildDb>;

function buildDb(d1: D1Database) {
  return drizzle(d1, { schema });
}

/**
 * Drizzle keeps no per-request state on a D1 database (D1 has no interactive transactions), and
 * building it walks the whole schema for the relational query helpers: one per binding object,
 * not one per request (bench/README.md measured the difference).
 */
const byBinding = new WeakMap<D1Database, Database>();

/** Drizzle on the D1 binding. Use `db.batch([...])` for atomic writes: D1 has no interactive transactions. */
export function createDb(d1: D1Database): Database {
  let db = byBinding.get(d1);
  if (!db) {
    db = buildDb(d1);
    byBinding.set(d1, db);
  }
  return db;
}
