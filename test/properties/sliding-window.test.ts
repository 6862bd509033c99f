import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Bucket,
  hitWindow,
  liveBuckets,
  RATE_LIMIT_WINDOW_SECONDS,
  rateLimitHeaders,
  refundWindow,
} from "../../src/lib/sliding-window";

/**
 * Properties of the sliding 60 s window (src/lib/sliding-window.ts) against a reference model that
 * keeps every allowed attempt's whole second in a list: an attempt at `now` counts the attempts of
 * the last 60 whole seconds (`second > floor(now / 1000) − 60`), and is allowed while they are
 * fewer than the limit. The model knows nothing of buckets; `resetSeconds` is checked by what it
 * means (the first whole second from now at which the answer changes), not by its formula.
 */

const START = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/** Gaps between attempts: bursts inside one second, a few seconds, and past a whole window. */
const gap = fc.oneof(
  fc.integer({ min: 0, max: 999 }),
  fc.integer({ min: 0, max: 5_000 }),
  fc.integer({ min: 0, max: 3 * RATE_LIMIT_WINDOW_SECONDS * 1000 }),
);

/** Attempts as [ms since the previous one, the limit it is checked against]. */
const attempts = (limit: fc.Arbitrary<number>) => fc.array(fc.tuple(gap, limit), { minLength: 1, maxLength: 120 });

const secondOf = (ms: number) => Math.floor(ms / 1000);
/** The model: the allowed attempts still counted at `now`. */
const liveAt = (hits: readonly number[], now: number) => hits.filter((s) => s > secondOf(now) - RATE_LIMIT_WINDOW_SECONDS).length;
const total = (buckets: readonly Bucket[]) => buckets.reduce((sum, [, n]) => sum + n, 0);

describe("the sliding rate-limit window (properties)", () => {
  it("answers every attempt as the reference model does: allowed, remaining, reset, and the buckets kept", () => {
    fc.assert(
      fc.property(attempts(fc.integer({ min: 1, max: 8 })), (steps) => {
        let buckets: Bucket[] = [];
        const hits: number[] = [];
        let now = START;
        for (const [dt, limit] of steps) {
          now += dt;
          const before = JSON.stringify(buckets);
          const { decision, buckets: next } = hitWindow(buckets, limit, now);
          expect(JSON.stringify(buckets)).toBe(before); // the input is not changed

          const allowed = liveAt(hits, now) < limit;
          expect(decision.allowed).toBe(allowed);
          if (allowed) hits.push(secondOf(now));
          const counted = liveAt(hits, now);
          expect(decision).toMatchObject({ limit, remaining: Math.max(0, limit - counted) });

          // resetSeconds: allowed, the first whole second from now at which fewer attempts count
          // (remaining grows); denied, the first at which an attempt is allowed.
          const changed = (at: number) => (allowed ? liveAt(hits, at) < counted : liveAt(hits, at) < limit);
          let reset = 1;
          while (!changed(now + reset * 1000)) reset += 1;
          expect(decision.resetSeconds).toBe(reset);

          // The buckets: one per whole second with allowed attempts inside the window, oldest first.
          const live = hits.filter((s) => s > secondOf(now) - RATE_LIMIT_WINDOW_SECONDS);
          const grouped = [...new Set(live)].map((s): Bucket => [s, live.filter((h) => h === s).length]);
          expect(next).toEqual(grouped);
          expect(next.length).toBeLessThanOrEqual(RATE_LIMIT_WINDOW_SECONDS);
          buckets = next;
        }
      }),
      { numRuns: 300 },
    );
  });

  it("never allows more than the limit inside any 60 s window", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), attempts(fc.constant(0)), (limit, steps) => {
        let buckets: Bucket[] = [];
        const allowedAt: number[] = [];
        let now = START;
        for (const [dt] of steps) {
          now += dt;
          const hit = hitWindow(buckets, limit, now);
          buckets = hit.buckets;
          if (hit.decision.allowed) allowedAt.push(secondOf(now));
        }
        // Every window of 60 whole seconds, ending at any second an attempt was allowed.
        for (const end of allowedAt) {
          expect(allowedAt.filter((s) => s > end - RATE_LIMIT_WINDOW_SECONDS && s <= end).length).toBeLessThanOrEqual(limit);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a denied attempt's Retry-After is honoured: a retry that long after is allowed, a second sooner is not", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), attempts(fc.constant(0)), (limit, steps) => {
        let buckets: Bucket[] = [];
        let now = START;
        for (const [dt] of steps) {
          now += dt;
          const { decision, buckets: next } = hitWindow(buckets, limit, now);
          const headers = rateLimitHeaders(decision);
          expect(headers["X-RateLimit-Reset"]).toBe(String(decision.resetSeconds));
          if (decision.allowed) {
            expect(headers["Retry-After"]).toBeUndefined();
          } else {
            expect(headers["Retry-After"]).toBe(String(decision.resetSeconds));
            expect(next).toEqual(liveBuckets(buckets, now)); // a denied attempt is not counted
            const retryAt = now + decision.resetSeconds * 1000;
            expect(hitWindow(next, limit, retryAt).decision.allowed).toBe(true);
            expect(hitWindow(next, limit, retryAt - 1000).decision.allowed).toBe(false);
          }
          buckets = next;
        }
      }),
      { numRuns: 300 },
    );
  });

  it("refunding an attempt right after it was counted gives back exactly that attempt", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), attempts(fc.constant(0)), gap, (limit, steps, last) => {
        let buckets: Bucket[] = [];
        let now = START;
        for (const [dt] of steps) {
          now += dt;
          buckets = hitWindow(buckets, limit, now).buckets;
        }
        now += last;
        const hit = hitWindow(buckets, limit, now);
        const live = liveBuckets(buckets, now);
        if (!hit.decision.allowed) return;
        const refunded = refundWindow(hit.buckets, now);
        expect(total(refunded)).toBe(total(live));
        expect(refunded).toEqual(live);
      }),
      { numRuns: 300 },
    );
  });
});
