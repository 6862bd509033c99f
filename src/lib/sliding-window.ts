import type { Refusal } from "./errors";
/**
 * The sliding 60 s rate-limit window of API.md §1, at one-second resolution, as a pure function
 * over its state, so the RateLimiterDO (one per limited key) and the wallet object (which counts
 * its owner's transfers after the idempotency lookup) keep one algorithm. The state is at most
 * 60 `[unix second, count]` pairs whatever the limit.
 */
export const RATE_LIMIT_WINDOW_SECONDS = 60;

/** Allowed attempts counted per whole second: `[unix second, count]`, oldest first. */
export type Bucket = [second: number, count: number];

/** What one attempt against a limit was told; the Worker turns it into X-RateLimit-* headers. */
export type RateLimitDecision = {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Whole seconds (≥ 1) until `remaining` next grows: when denied, until a retry can succeed. */
  resetSeconds: number;
};

/** The buckets still inside the window at `now` (the same array when nothing expired). */
export function liveBuckets(buckets: readonly Bucket[], now: number): Bucket[] {
  const second = Math.floor(now / 1000);
  const firstLive = buckets.findIndex(([s]) => s > second - RATE_LIMIT_WINDOW_SECONDS);
  return firstLive === -1 ? [] : firstLive === 0 ? (buckets as Bucket[]) : buckets.slice(firstLive);
}

/**
 * Counts one attempt of `cost` units (default 1; e.g. the people one request adds to a group) if
 * `limit` allows all of them; a denied attempt is not counted (a retry after Retry-After works).
 * Returns the decision and the new buckets (a fresh array; the input is not changed).
 */
export function hitWindow(
  buckets: readonly Bucket[],
  limit: number,
  now: number,
  cost = 1,
): { decision: RateLimitDecision; buckets: Bucket[] } {
  const second = Math.floor(now / 1000);
  const live = liveBuckets(buckets, now).map(([s, n]): Bucket => [s, n]);
  let count = live.reduce((sum, [, n]) => sum + n, 0);
  const allowed = count + cost <= limit;
  if (allowed) {
    const newest = live[live.length - 1];
    if (newest && newest[0] === second) newest[1] += cost;
    else live.push([second, cost]);
    count += cost;
  }
  const freeAt = (slots: number) => {
    let freed = 0;
    for (const [s, n] of live) {
      freed += n;
      if (freed >= slots) return (s + RATE_LIMIT_WINDOW_SECONDS) * 1000;
    }
    return 0;
  };
  return {
    buckets: live,
    decision: {
      allowed,
      limit,
      remaining: Math.max(0, limit - count),
      resetSeconds: Math.max(1, Math.ceil((freeAt(allowed ? 1 : count + cost - limit) - now) / 1000)),
    },
  };
}

/**
 * Gives back one attempt counted at `at` (epoch ms; its bucket, or the next one when the count
 * landed a second later): for a request that turned out not to count (a replay). A fresh array.
 */
export function refundWindow(buckets: readonly Bucket[], at: number): Bucket[] {
  const second = Math.floor(at / 1000);
  const index = buckets.findIndex(([s, n]) => s >= second && n > 0);
  if (index === -1) return [...buckets];
  return buckets.flatMap(([s, n], i): Bucket[] => (i !== index ? [[s, n]] : n > 1 ? [[s, n - 1]] : []));
}

/** `X-RateLimit-*` for a decision; with `Retry-After` too when it was denied. */
export function rateLimitHeaders(decision: RateLimitDecision): Record<string, string> {
  const headers: Record<string, string> = {
    "X-RateLimit-Limit": String(decision.limit),
    "X-RateLimit-Remaining": String(decision.remaining),
    "X-RateLimit-Reset": String(decision.resetSeconds),
  };
  if (!decision.allowed) headers["Retry-After"] = String(decision.resetSeconds);
  return headers;
}

/** The 429 detail line for a denied decision. */
export const rateLimitedDetail = (decision: RateLimitDecision) =>
  `Rate limit of ${decision.limit} per minute reached; retry in ${decision.resetSeconds} s`;

/**
 * One attempt against the window an object keeps under `key` in its synchronous KV storage (the
 * wallet counts its owner's transfers and message sends this way, after the key lookup): the
 * buckets are written only when the attempt is counted.
 */
export function hitStoredWindow(kv: SyncKvStorage, key: string, limit: number, now: number): RateLimitDecision {
  const { decision, buckets } = hitWindow(kv.get<Bucket[]>(key) ?? [], limit, now);
  if (decision.allowed) kv.put(key, buckets);
  return decision;
}

/** 429 `rate_limited` as an object answers it across RPC, with its Retry-After and X-RateLimit-* headers. */
export const rateLimitedRefusal = (decision: RateLimitDecision): Refusal => ({
  ok: false,
  code: "rate_limited",
  details: [rateLimitedDetail(decision)],
  headers: rateLimitHeaders(decision),
});
