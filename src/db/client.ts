import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Database = ReturnType<typeof createDb>;

/** Drizzle on the D1 binding. Use `db.batch([...])` for atomic writes: D1 has no interactive transactions. */
export function createDb(d1: D1Database) {
  return drizzle(d1, { schema });
}
