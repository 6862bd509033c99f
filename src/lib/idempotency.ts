import { sha256 } from "hono/utils/crypto";
import { ApiError } from "./errors";

/**
 * The `Idempotency-Key` primitives every idempotent operation shares (API.md §1), whichever
 * store keeps its outcome: D1 for message sends (services/idempotency.ts), the wallet object
 * for credit transfers and admin grants. One retention, one key format, one fingerprint.
 */

/** Keys and their stored outcomes are kept at least this long (API.md: at least 24 h), then purged. */
export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;

export const IDEMPOTENCY_HEADER = "Idempotency-Key";
export const REPLAYED_HEADER = "Idempotent-Replayed";

const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;

/** The header's value, or undefined when absent; 400 `validation_failed` unless 1..255 printable ASCII. */
export function parseIdempotencyKey(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!KEY_PATTERN.test(raw)) {
    throw new ApiError("validation_failed", [`${IDEMPOTENCY_HEADER}: must be 1 to 255 printable ASCII characters`]);
  }
  return raw;
}

/**
 * JSON with object keys sorted at every depth, so key order does not change the fingerprint.
 * Members whose value is null are left out like absent ones: every optional request field
 * accepts null as "absent", so `{"note": null}` and `{}` are the same request.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** SHA-256 of method, path and canonical body: what "the same request" means for a key. */
export async function requestFingerprint(method: string, path: string, body: unknown): Promise<string> {
  const digest = await sha256(`${method.toUpperCase()} ${path}\n${canonicalJson(body)}`);
  if (digest === null) throw new Error("SHA-256 is unavailable (no crypto.subtle)");
  return digest;
}

/** The claim a request holds on its key while it executes (the row `createdAt` identifies this holder). */
export type IdempotencyClaim = { userId: string; key: string; claimedAt: number };

/**
 * A key not claimed yet: the request's own message batch claims it (services/idempotency.ts,
 * `keyClaimStatements`), so a fresh key costs no D1 round trip of its own. `messageId` is the id
 * the message gets and, inside that batch, the mark that the key's row is this request's.
 * The batch reports back on the object: `batch` ("sent" when it went to D1, "done" when its
 * results were read), `held` (the row is this request's after the batch) and `outcome` (the
 * response stored with the message, or null).
 */
export type BatchClaim = {
  readonly userId: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly claimedAt: number;
  readonly messageId: string;
  batch: "unsent" | "sent" | "done";
  held: boolean;
  outcome: { status: number; body: string } | null;
};

/** What `c.var.idempotencyClaim` holds while a keyed send executes: a claim held, or one its batch takes. */
export type KeyClaim = IdempotencyClaim | BatchClaim;

export const isBatchClaim = (claim: KeyClaim | null | undefined): claim is BatchClaim =>
  claim !== null && claim !== undefined && "messageId" in claim;
