import { DurableObject } from "cloudflare:workers";

/** What one attempt against a limit was told; the Worker turns it into X-RateLimit-* headers. */
export type RateLimitDecision = {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Whole seconds (≥ 1) until `remaining` next grows: when denied, until a retry can succeed. */
  resetSeconds: number;
};

export const RATE_LIMIT_WINDOW_SECONDS = 60;
const BUCKETS_KEY = "buckets";

/** Allowed attempts counted per whole second: `[unix second, count]`, oldest first. */
type Bucket = [second: number, count: number];

/**
 * One limiter per `<scope>:<key>` (`idFromName`): a sliding 60 s window at one-second resolution.
 * Allowed attempts are counted in per-second buckets, so the state is at most 60 pairs whatever
 * the limit (a benchmark that raises a limit to millions does not make every hit rewrite a huge
 * log). A Durable Object, not an in-memory map, so every isolate and colo sees one count; the
 * buckets are persisted because an object can be evicted or redeployed mid-window. An alarm
 * deletes the storage once the window has emptied, so keys that stop being used (e.g. guessed
 * emails) leave nothing behind.
 */
export class RateLimiterDO extends DurableObject<Env> {
  private buckets: Bucket[];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.buckets = ctx.storage.kv.get<Bucket[]>(BUCKETS_KEY) ?? [];
  }

  /** Counts one attempt if `limit` allows it; denied attempts are not counted (a retry after Retry-After works). */
  async hit(limit: number, now: number = Date.now()): Promise<RateLimitDecision> {
    const second = Math.floor(now / 1000);
    this.dropExpired(second);
    const wasEmpty = this.buckets.length === 0;
    let count = this.buckets.reduce((sum, [, n]) => sum + n, 0);
    const allowed = count < limit;
    if (allowed) {
      const newest = this.buckets[this.buckets.length - 1];
      if (newest && newest[0] === second) newest[1] += 1;
      else this.buckets.push([second, 1]);
      count += 1;
      // Written on every hit, but the answer does not wait for the write to be confirmed durable
      // (the output gate would hold every request behind a flush): the count in memory is exact
      // while this object lives, and a crash in the instant after a hit can only undercount it.
      void this.ctx.storage.put(BUCKETS_KEY, this.buckets, { allowUnconfirmed: true });
      // Once per busy period: the alarm reschedules itself while buckets remain.
      if (wasEmpty) await this.ctx.storage.setAlarm((second + RATE_LIMIT_WINDOW_SECONDS) * 1000);
    }
    return {
      allowed,
      limit,
      remaining: Math.max(0, limit - count),
      resetSeconds: Math.max(1, Math.ceil((this.freeAt(allowed ? 1 : count - limit + 1) - now) / 1000)),
    };
  }

  override async alarm(): Promise<void> {
    this.dropExpired(Math.floor(Date.now() / 1000));
    const newest = this.buckets[this.buckets.length - 1];
    if (newest === undefined) {
      await this.ctx.storage.deleteAll();
      return;
    }
    await this.ctx.storage.setAlarm((newest[0] + RATE_LIMIT_WINDOW_SECONDS) * 1000);
  }

  /** When `slots` counted attempts will have left the window (oldest first). */
  private freeAt(slots: number): number {
    let freed = 0;
    for (const [second, n] of this.buckets) {
      freed += n;
      if (freed >= slots) return (second + RATE_LIMIT_WINDOW_SECONDS) * 1000;
    }
    return 0;
  }

  private dropExpired(second: number) {
    const firstLive = this.buckets.findIndex(([s]) => s > second - RATE_LIMIT_WINDOW_SECONDS);
    const kept = firstLive === -1 ? [] : this.buckets.slice(firstLive);
    if (kept.length !== this.buckets.length) {
      this.buckets = kept;
      this.ctx.storage.kv.put(BUCKETS_KEY, this.buckets);
    }
  }
}
