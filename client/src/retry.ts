/**
 * When a failed attempt is tried again. The default retries what cannot have been decided
 * against the caller: network errors (the answer was lost, the key makes the retry safe), 5xx,
 * and 429 after its Retry-After. Everything else (4xx) is an answer and is returned at once.
 */
export type RetryContext = {
  /** 1 for the first attempt that failed. */
  attempt: number;
  /** The thrown error when no response arrived (network error, timeout). */
  error?: unknown;
  /** The response when one arrived. */
  response?: Response;
};

/** Milliseconds to wait before the next attempt, or null to give up and surface the failure. */
export type RetryPolicy = (context: RetryContext) => number | null;

export type BackoffOptions = { maxAttempts?: number; baseMs?: number; maxMs?: number; random?: () => number };

/** Exponential backoff with "equal jitter": half the delay fixed, half random, so clients that failed together spread out. */
export function backoffDelay(
  attempt: number,
  { baseMs = 200, maxMs = 10_000, random = Math.random }: BackoffOptions = {},
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** Retry-After in whole seconds (what this API sends) or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(response: Response, now = Date.now()): number | null {
  const value = response.headers.get("Retry-After");
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

export function defaultRetryPolicy(options: BackoffOptions = {}): RetryPolicy {
  const maxAttempts = options.maxAttempts ?? 8;
  return ({ attempt, error, response }) => {
    if (attempt >= maxAttempts) return null;
    if (!response) return error === undefined ? null : backoffDelay(attempt, options);
    if (response.status === 429) return retryAfterMs(response) ?? backoffDelay(attempt, options);
    if (response.status >= 500) return backoffDelay(attempt, options);
    return null;
  };
}

/** Never retries: for callers that run their own loop. */
export const noRetry: RetryPolicy = () => null;

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
