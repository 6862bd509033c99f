import { DurableObject } from "cloudflare:workers";
import {
  type Bucket,
  hitWindow,
  liveBuckets,
  RATE_LIMIT_WINDOW_SECONDS,
  type RateLimitDecision,
  refundWindow,
} from "../../lib/sliding-window";

export type { RateLimitDecision } from "../../lib/sliding-window";

const BUCKETS_KEY = "buckets";

/**
 * One limiter per `<scope>:<key>` (`idFromName`): the sliding window of src/lib/sliding-window.ts.
 * A Durable Object, not an in-memory map, so every isolate and colo sees one count; the buckets
 * are persisted because an object can be evicted or redeployed mid-window. An alarm deletes the
 * storage once the window has emptied, so keys that stop being used (e.g. guessed emails) leave
 * nothing behind.
 */
export class RateLimiterDO extends DurableObject<Env> {
  private buckets: Bucket[];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.buckets = ctx.storage.kv.get<Bucket[]>(BUCKETS_KEY) ?? [];
  }

  /**
   * Counts one attempt of `cost` units if `limit` allows it; denied attempts are not counted (a
   * retry after Retry-After works).
   */
  async hit(limit: number, now: number = Date.now(), cost = 1): Promise<RateLimitDecision> {
    const wasEmpty = liveBuckets(this.buckets, now).length === 0;
    const { decision, buckets } = hitWindow(this.buckets, limit, now, cost);
    this.buckets = buckets;
    if (decision.allowed) {
      // Written on every hit, but the answer does not wait for the write to be confirmed durable
      // (the output gate would hold every request behind a flush): the count in memory is exact
      // while this object lives, and a crash in the instant after a hit can only undercount it.
      void this.ctx.storage.put(BUCKETS_KEY, this.buckets, { allowUnconfirmed: true });
      // Once per busy period: the alarm reschedules itself while buckets remain.
      if (wasEmpty) await this.ctx.storage.setAlarm((Math.floor(now / 1000) + RATE_LIMIT_WINDOW_SECONDS) * 1000);
    }
    return decision;
  }

  /** Gives back one attempt counted at `at` (a request that turned out to be a replay); the alarm stays as it is. */
  async refund(at: number): Promise<void> {
    this.buckets = refundWindow(this.buckets, at);
    void this.ctx.storage.put(BUCKETS_KEY, this.buckets, { allowUnconfirmed: true });
  }

  override async alarm(): Promise<void> {
    this.buckets = liveBuckets(this.buckets, Date.now());
    const newest = this.buckets[this.buckets.length - 1];
    if (newest === undefined) {
      await this.ctx.storage.deleteAll();
      return;
    }
    this.ctx.storage.kv.put(BUCKETS_KEY, this.buckets);
    await this.ctx.storage.setAlarm((newest[0] + RATE_LIMIT_WINDOW_SECONDS) * 1000);
  }
}
