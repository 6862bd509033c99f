/**
 * How every SQLite-backed object here versions its schema: each entry of `migrations` is one
 * version, applied in order inside one transaction (from the constructor, under
 * blockConcurrencyWhile, or when the object first needs its tables); the applied version is kept
 * in `schema_version`. Never edit a shipped entry: append a new one.
 */
export function applyMigrations(storage: DurableObjectStorage, migrations: readonly string[]): void {
  const sql = storage.sql;
  sql.exec("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
  const current = sql.exec<{ version: number }>("SELECT version FROM schema_version WHERE id = 1").toArray()[0]?.version ?? 0;
  if (current >= migrations.length) return;
  storage.transactionSync(() => {
    for (let version = current; version < migrations.length; version += 1) sql.exec(migrations[version]!);
    sql.exec(
      "INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
      migrations.length,
    );
  });
}
