import { z } from "@hono/zod-openapi";
import { fromBase64Url, toBase64Url } from "./encoding";
import { ApiError } from "./errors";

/**
 * Opaque list cursors: base64url of a small JSON object whose shape each list declares with zod.
 * A cursor that does not decode to that shape is 400 `validation_failed` (field `cursor`).
 */
export function encodeCursor(value: unknown): string {
  return toBase64Url(new TextEncoder().encode(JSON.stringify(value)));
}

export function decodeCursor<T>(cursor: string, shape: z.ZodType<T>): T {
  try {
    const bytes = fromBase64Url(cursor);
    const parsed =
      bytes && shape.safeParse(JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes)));
    if (parsed?.success) return parsed.data;
  } catch {
    // fall through to the 400 below
  }
  throw new ApiError("validation_failed", ["cursor: is not a cursor returned by this list"]);
}

/**
 * A whole-number query parameter in [min, max]: digits only, since z.coerce alone would take
 * "0x10", "1e1" or " 5" as numbers.
 */
export const queryInteger = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, { message: `must be an integer between ${min} and ${max}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, { message: `must be between ${min} and ${max}` })
        .max(max, { message: `must be between ${min} and ${max}` }),
    );

/** `limit` and `cursor` query parameters shared by every list (API.md "Lists"). */
export const pageQuerySchema = z.object({
  limit: queryInteger(1, 100)
    .default(50)
    .openapi({
      param: { name: "limit", in: "query" },
      type: "integer",
      minimum: 1,
      maximum: 100,
      default: 50,
      example: 50,
      description: "Page size, 1..100 (default 50).",
    }),
  cursor: z
    .string()
    .min(1)
    .max(512)
    .optional()
    .openapi({ param: { name: "cursor", in: "query" }, description: "The `nextCursor` of the previous page." }),
});

/** The list shape of API.md: `{ items, nextCursor }`. */
export const pageSchema = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });

/** Builds a page from `limit + 1` fetched rows: the extra row only says whether there is more. */
export function toPage<Row, Item>(
  rows: Row[],
  limit: number,
  toItem: (row: Row) => Item,
  cursorOf: (row: Row) => unknown,
): { items: Item[]; nextCursor: string | null } {
  const hasMore = rows.length > limit;
  const pageRows = hasMore ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    items: pageRows.map(toItem),
    nextCursor: hasMore && last !== undefined ? encodeCursor(cursorOf(last)) : null,
  };
}
