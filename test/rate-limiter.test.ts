import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RateLimiterDO } from "../src/durable-objects/rate-limiter/rate-limiter-do";

const limiter = (name: string) => env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(name));

describe("RateLimiterDO", () => {
  // Times are injected relative to now: the cleanup alarm is real and would empty a log set in the past.
  it("allows `limit` attempts in 60 s, then denies with the seconds until a slot frees", async () => {
    const stub = limiter(`test:${crypto.randomUUID()}`);
    const t0 = Math.ceil(Date.now() / 1000) * 1000;
    expect(await stub.hit(3, t0)).toEqual({ allowed: true, limit: 3, remaining: 2, resetSeconds: 60 });
    expect(await stub.hit(3, t0 + 10_000)).toMatchObject({ allowed: true, remaining: 1, resetSeconds: 50 });
    expect(await stub.hit(3, t0 + 20_000)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await stub.hit(3, t0 + 30_500)).toEqual({ allowed: false, limit: 3, remaining: 0, resetSeconds: 30 });
    // Denied attempts are not counted: the first hit leaving the window frees exactly one slot.
    expect(await stub.hit(3, t0 + 60_001)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await stub.hit(3, t0 + 60_002)).toMatchObject({ allowed: false, resetSeconds: 10 });
  });

  it("keeps one count per name and survives a new instance (the buckets are persisted)", async () => {
    const name = `test:${crypto.randomUUID()}`;
    const now = Date.now();
    await limiter(name).hit(2, now);
    await limiter(name).hit(2, now);
    expect((await limiter(`test:${crypto.randomUUID()}`).hit(2, now)).allowed).toBe(true);
    const stored = await runInDurableObject(limiter(name), (_instance: RateLimiterDO, state) => state.storage.kv.get("buckets"));
    expect(stored).toEqual([[Math.floor(now / 1000), 2]]);
    expect((await limiter(name).hit(2, now + 1)).allowed).toBe(false);
  });

  it("keeps at most one bucket per second of the window, whatever the limit", async () => {
    const stub = limiter(`test:${crypto.randomUUID()}`);
    const t0 = Date.now();
    for (let i = 0; i < 300; i++) await stub.hit(1_000_000, t0 + i * 400);
    const stored = await runInDurableObject(stub, (_instance: RateLimiterDO, state) =>
      state.storage.kv.get<unknown[]>("buckets"),
    );
    expect(stored?.length).toBeLessThanOrEqual(60);
    // 120 s of hits, 2.5 per second: only the last minute still counts.
    const decision = await stub.hit(1_000_000, t0 + 300 * 400);
    expect(1_000_000 - decision.remaining).toBeGreaterThanOrEqual(148);
    expect(1_000_000 - decision.remaining).toBeLessThanOrEqual(153);
  });

  it("a lowered limit is enforced at once, with the reset of the hit that frees a slot", async () => {
    const stub = limiter(`test:${crypto.randomUUID()}`);
    const t0 = Math.ceil(Date.now() / 1000) * 1000;
    for (let i = 0; i < 4; i++) await stub.hit(10, t0 + i * 1000);
    expect(await stub.hit(2, t0 + 4000)).toEqual({ allowed: false, limit: 2, remaining: 0, resetSeconds: 58 });
  });

  it("refund gives back one attempt counted at a time: its second's bucket, or the next one", async () => {
    const stub = limiter(`test:${crypto.randomUUID()}`);
    const t0 = Math.ceil(Date.now() / 1000) * 1000;
    await stub.hit(2, t0);
    await stub.hit(2, t0 + 2500);
    expect((await stub.hit(2, t0 + 2600)).allowed).toBe(false);
    // Taken at t0 + 1.2 s by the Worker's clock, counted in the bucket of t0 + 2 s: that one gives back.
    await stub.refund(t0 + 1200);
    const buckets = await runInDurableObject(
      stub,
      (instance: RateLimiterDO) => (instance as unknown as { buckets: unknown }).buckets,
    );
    expect(buckets).toEqual([[t0 / 1000, 1]]);
    expect(await stub.hit(2, t0 + 2700)).toMatchObject({ allowed: true, remaining: 0 });
    // Nothing counted at or after that time: nothing to give back.
    await stub.refund(t0 + 5000);
    expect((await stub.hit(2, t0 + 2800)).allowed).toBe(false);
  });

  it("its alarm deletes the storage once the window is empty", async () => {
    const name = `test:${crypto.randomUUID()}`;
    await limiter(name).hit(5, Date.now() - 61_000);
    // The alarm was set in the past, so it may already have run on its own; run it if not.
    await runDurableObjectAlarm(limiter(name));
    const left = await runInDurableObject(limiter(name), (_instance: RateLimiterDO, state) => [...state.storage.kv.list()]);
    expect(left).toEqual([]);
  });
});
