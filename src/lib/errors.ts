/**
 * The one table of error statuses and codes (API.md §1). Services throw ApiError; the app's
 * onError turns it into the envelope. Nothing else decides what an error looks like.
 */
export const GENERIC_ERROR_MESSAGES = {
  400: "Validation failed",
  401: "Authentication required",
  403: "Insufficient permissions",
  404: "Resource not found",
  409: "Resource already exists or cannot be changed in its current state",
  413: "Payload too large",
  415: "Unsupported media type",
  426: "Upgrade required",
  429: "Too many requests",
  500: "Internal server error",
} as const;

export type ErrorStatus = keyof typeof GENERIC_ERROR_MESSAGES;

export const ERROR_CODES = {
  validation_failed: 400,
  malformed_json: 400,
  authentication_required: 401,
  invalid_token: 401,
  token_expired: 401,
  invalid_credentials: 401,
  session_ended: 401,
  insufficient_permissions: 403,
  recipient_blocked: 403,
  account_suspended: 403,
  not_found: 404,
  user_not_found: 404,
  chat_not_found: 404,
  message_not_found: 404,
  transfer_not_found: 404,
  already_exists: 409,
  insufficient_balance: 409,
  idempotency_key_reused: 409,
  message_immutable: 409,
  transfer_limit_exceeded: 409,
  transfer_voided: 409,
  group_full: 409,
  chat_limit_reached: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  upgrade_required: 426,
  rate_limited: 429,
  internal_error: 500,
} as const satisfies Record<string, ErrorStatus>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ApiError extends Error {
  readonly status: ErrorStatus;
  readonly code: ErrorCode;
  readonly details: string[];
  /** Extra response headers (Retry-After, X-RateLimit-*). */
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, details: string[] = [], headers: Record<string, string> = {}) {
    super(`${code}${details.length ? `: ${details.join("; ")}` : ""}`);
    this.name = "ApiError";
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
    this.headers = headers;
  }
}

/** A refusal that crosses Durable Object RPC as a value (custom error fields are lost when thrown). */
export type Refusal = { ok: false; code: ErrorCode; details: string[]; headers?: Record<string, string> };
export type Outcome<T> = { ok: true; value: T } | Refusal;

export const refuse = (code: ErrorCode, ...details: string[]): Refusal => ({ ok: false, code, details });

export function unwrap<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw new ApiError(outcome.code, outcome.details, outcome.headers);
  return outcome.value;
}

/**
 * A runtime check of an invariant the code relies on (never a validation of input): a violation
 * is a bug or corrupted storage, so it throws a plain Error (500, logged) and, inside a storage
 * transaction, rolls that transaction back instead of committing wrong books.
 */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
