import { DurableObject } from "cloudflare:workers";

/** What one attempt against a limit was told; the Worker turns it into X-RateLimit-* headers. */
export type RateLimitDecision = {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Whole seconds (≥ 1) until `remaining` next grows: when denied, until a retry can succeed. */
  resetSeconds: number;
};

export const RATE_LIMIT_WINDOW_MS = 60_000;
const HITS_KEY = "hits";

/**
 * One limiter per `<scope>:<key>` (`idFromName`), a sliding 60 s window kept as the log of the
 * attempts it allowed (at most `limit` timestamps). A Durable Object, not an in-memory map, so
 * every isolate and every colo sees one count; the log is persisted because an object can be
 * evicted or redeployed mid-window. An alarm deletes the storage once the window has emptied,
 * so keys that stop being used (e.g. guessed emails) leave nothing behind.
 */
export class RateLimiterDO extends DurableObject<Env> {
  private hits: number[];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.hits = ctx.storage.kv.get<number[]>(HITS_KEY) ?? [];
  }

  /** Counts one attempt if `limit` allows it; denied attempts are not counted (a retry after Retry-After works). */
  async hit(limit: number, now: number = Date.now()): Promise<RateLimitDecision> {
    this.dropExpired(now);
    const allowed = this.hits.length < limit;
    if (allowed) {
      this.hits.push(now);
      this.ctx.storage.kv.put(HITS_KEY, this.hits);
      await this.ctx.storage.setAlarm(now + RATE_LIMIT_WINDOW_MS);
    }
    // When denied, a slot frees when enough of the oldest hits leave the window to go below the limit
    // (more than one if the limit var was lowered since they were counted).
    const freeingHit = allowed ? this.hits[0] : this.hits[this.hits.length - limit];
    const resetMs = (freeingHit ?? now) + RATE_LIMIT_WINDOW_MS - now;
    return {
      allowed,
      limit,
      remaining: Math.max(0, limit - this.hits.length),
      resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)),
    };
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    this.dropExpired(now);
    const newest = this.hits[this.hits.length - 1];
    if (newest === undefined) {
      await this.ctx.storage.deleteAll();
      return;
    }
    await this.ctx.storage.setAlarm(newest + RATE_LIMIT_WINDOW_MS);
  }

  private dropExpired(now: number) {
    const windowStart = now - RATE_LIMIT_WINDOW_MS;
    let firstLive = 0;
    while (firstLive < this.hits.length && (this.hits[firstLive] ?? 0) <= windowStart) firstLive += 1;
    if (firstLive > 0) {
      this.hits = this.hits.slice(firstLive);
      this.ctx.storage.kv.put(HITS_KEY, this.hits);
    }
  }
}
