import { z } from "@hono/zod-openapi";
import { IDEMPOTENCY_HEADER, REPLAYED_HEADER } from "../lib/idempotency";

/**
 * The `Idempotency-Key` request header and `Idempotent-Replayed` response header, documented once
 * for every route that accepts a key (message sends, credit transfers, admin grants).
 *
 * The key's rules (1..255 printable ASCII, else 400 on field `Idempotency-Key`) are checked by
 * this header validator and again where the key is read (middlewares/idempotency.ts), with the
 * same message. No `example`: the playground would
 * pre-fill it, and a second "Execute" would silently replay the first request.
 */
export const idempotencyHeadersSchema = z.object({
  [IDEMPOTENCY_HEADER]: z
    .string()
    // One check with the message parseIdempotencyKey gives, so every refusal reads the same.
    .regex(/^[\x20-\x7e]{1,255}$/, { message: "must be 1 to 255 printable ASCII characters" })
    .optional()
    .openapi({
      minLength: 1,
      maxLength: 255,
      description:
        "Optional, 1..255 printable ASCII characters (e.g. a UUID you generate per operation), scoped to you and kept at least 24 h. The same key with the same body answers the original status and body again with `Idempotent-Replayed: true` and never executes twice; with another body, 409 `idempotency_key_reused`. Refusals before execution (400/401/403/404/429) and 5xx are not stored, so a corrected retry runs. Without a key every request is a new operation.",
    }),
});

export const replayedResponseHeader = {
  [REPLAYED_HEADER]: {
    description: "`true` when this is the stored response of an earlier request with the same Idempotency-Key.",
    schema: { type: "string" as const, enum: ["true"] },
  },
};
