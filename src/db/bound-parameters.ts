/**
 * D1 binds at most 100 parameters per statement: lists of ids and multi-row inserts are split
 * into chunks that stay under it and run together in one batch.
 */
export const MAX_BOUND_PARAMETERS = 100;

/** How many rows of `columns` bound values each fit in one statement. */
export const rowsPerStatement = (columns: number) => Math.floor(MAX_BOUND_PARAMETERS / columns);

export function inChunks<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}
