import { describe, expect, it } from "vitest";
import { replaceBlock } from "../../bench/blocks.ts";
import { type Row, renderGoals } from "../../bench/goals.ts";
import { freshPairs, pairKey, samplePairs } from "../../bench/pairs.ts";
import { type CpuProfile, summarize } from "../../bench/summarize-profile.ts";

type Node = CpuProfile["nodes"][number];
const frame = (id: number, functionName: string, url: string, children: number[] = []): Node => ({
  id,
  callFrame: { functionName, url, lineNumber: -1, columnNumber: -1 },
  children,
});

/** A profile whose samples hit `hits` (node id → number of 1 ms samples), in that order. */
function profileOf(nodes: Node[], hits: [number, number][]): CpuProfile {
  const samples = hits.flatMap(([id, n]) => Array.from({ length: n }, () => id));
  return { nodes, samples, timeDeltas: samples.map(() => 1000), startTime: 0, endTime: samples.length * 1000 };
}

describe("bench/summarize-profile.ts", () => {
  // root → app code (src/…) → SubtleCrypto verify (native, no URL) and JSON.parse (native);
  // root → drizzle → D1 binding's fetch (native); root → wallet object → sql.exec (native); idle.
  const nodes = [
    frame(1, "(root)", "", [2, 5, 7, 10]),
    frame(2, "verifyAccessToken", "file:///node_modules/hono/dist/utils/jwt/jwt.js", [3, 4]),
    frame(3, "verify", ""),
    frame(4, "parse", ""),
    frame(5, "buildQuery", "file:///app/node_modules/drizzle-orm/sql/sql.js", [6]),
    frame(6, "_send", "cloudflare-internal:d1-api"),
    frame(7, "debit", "file:///app/src/durable-objects/wallet/wallet-do.ts", [8]),
    frame(8, "exec", ""),
    frame(10, "(idle)", ""),
  ];
  const profile = profileOf(nodes, [
    [3, 4],
    [4, 2],
    [5, 3],
    [6, 5],
    [7, 1],
    [8, 6],
    [10, 9],
  ]);

  it("gives a native frame its caller's bucket, JSON and SQLite storage their own, and leaves idle out", () => {
    const summary = summarize(profile, 2);
    // per request: ms / 2 requests
    expect(summary.perBucketMs["JWT + crypto"]).toBeCloseTo(2); // verify inherits from hono/jwt
    expect(summary.perBucketMs.JSON).toBeCloseTo(1);
    expect(summary.perBucketMs["Drizzle query building"]).toBeCloseTo(1.5);
    expect(summary.perBucketMs["D1 calls"]).toBeCloseTo(2.5);
    expect(summary.perBucketMs["wallet object (own code)"]).toBeCloseTo(0.5);
    expect(summary.perBucketMs["object RPC + storage"]).toBeCloseTo(3);
    expect(summary.idleMs).toBeCloseTo(9);
    expect(summary.busyMs).toBeCloseTo(21);
    expect(summary.topFrames[0]).toMatchObject({ frame: "exec (native)", bucket: "object RPC + storage" });
  });
});

describe("bench/goals.ts", () => {
  const row = (name: string, rps: number, ratioToBare: number, p99Ms = 10): Row => ({
    name,
    rps,
    ratioToBare,
    p99Ms,
    p50Ms: 1,
    requests: rps * 8,
    errors: 0,
    bareRps: rps / ratioToBare,
  });

  it("judges each goal of issues 12, 21 and 22 from the run's own ratios", () => {
    const table = renderGoals(
      [
        row("health", 900, 0.85),
        row("users-me", 200, 0.2),
        row("transfer-hot-sender", 70, 0.07, 450),
        row("message-list-1k", 200, 0.2),
        row("message-list-100k", 150, 0.15),
        row("bare-d1-read", 250, 0.25),
        row("message-send", 100, 0.1),
        row("bare-d1-append", 600, 0.19),
        row("bare-chat-append", 200, 0.2),
        row("bare-chat-read", 250, 0.25),
        { ...row("message-send-group-100", 120, 0.12), requests: 960, d1RowsWritten: 600, d1RowsWrittenPerRequest: 0.625 },
        row("transfer-random-pairs", 40, 0.03, 380),
        row("bare-transfer-hot-sender", 40, 0.05),
        row("bare-transfer-random-pairs", 45, 0.045),
        row("transfer-hot-recipient", 30, 0.02, 250),
        row("bare-transfer-hot-recipient", 60, 0.04, 90),
        row("transfer-first-pair", 20, 0.01, 900),
      ],
      [],
    );
    expect(table).toContain("| health ≥ 0.8× bare | 0.85× | — | met |");
    expect(table).toContain(
      "| users-me ≥ 0.3× bare | 0.2× | 0.25× (bare-d1-read) | missed by 1.50×; the goal is above the floor |",
    );
    // Issue 21: the chat paths against the chat object's floors, and the directory's D1 rows per send.
    expect(table).toContain(
      "| message-send ≥ 0.8× bare-chat-append | 0.50× the floor (100 vs 200 req/s), p99 10 ms | 0.2× bare, p99 10 ms | missed by 1.60× |",
    );
    expect(table).toContain(
      "| message-list-1k ≥ 0.8× bare-chat-read | 0.80× the floor (200 vs 250 req/s), p99 10 ms | 0.25× bare, p99 10 ms | met |",
    );
    expect(table).toContain(
      "| message-list-100k ≥ 0.8× bare-chat-read | 0.60× the floor (150 vs 250 req/s), p99 10 ms | 0.25× bare, p99 10 ms | missed by 1.33× |",
    );
    expect(table).toContain(
      "| message-send-group-100 (no goal: reported against bare-chat-append) | 0.60× the floor (120 vs 200 req/s), p99 10 ms | 0.2× bare, p99 10 ms | — |",
    );
    expect(table).toContain("| message-send-group-100: D1 rows written per send ≤ 1 | 0.625 (600 rows, 960 sends) | — | met |");
    // chat-list was not measured: no line for its goal.
    expect(table).not.toContain("| chat-list");
    // Issue 22: a transfer against its floor, as the ratio of their × bare figures.
    expect(table).toContain(
      "| transfer-hot-sender ≥ 1× bare-transfer-hot-sender, p99 ≤ 300 ms | 1.40× the floor (70 vs 40 req/s), p99 450 ms | 0.05× bare, p99 10 ms | met; tail missed by 1.5× |",
    );
    expect(table).toContain(
      "| transfer-random-pairs ≥ 0.7× bare-transfer-random-pairs | 0.67× the floor (40 vs 45 req/s), p99 380 ms | 0.045× bare, p99 10 ms | missed by 1.05× |",
    );
    expect(table).toContain(
      "| transfer-hot-recipient ≥ 1× bare-transfer-hot-recipient, p99 ≤ 300 ms | 0.50× the floor (30 vs 60 req/s), p99 250 ms | 0.04× bare, p99 90 ms | missed by 2.00×; tail met |",
    );
    expect(table).toContain(
      "| transfer-first-pair (no goal: reported against bare-transfer-first-pair) | 0.01× bare, p99 900 ms | not measured in this run | — |",
    );
    expect(table).toContain("| message-list-100k ≥ 0.9× message-list-1k (req/s) | 150 vs 200 (0.75×) | — | missed by 1.20× |");
    expect(table).toContain(
      "| books: reconciliation clean, seq contiguous, directory caught up, 0 negative | 0 violations | — | met |",
    );
  });

  it("does not judge a transfer against its floor when a bare run counted no request", () => {
    const table = renderGoals(
      [row("transfer-hot-sender", 70, Number.POSITIVE_INFINITY), row("bare-transfer-hot-sender", 40, 0.05)],
      [],
    );
    expect(table).toContain(
      "| transfer-hot-sender ≥ 1× bare-transfer-hot-sender, p99 ≤ 300 ms | not comparable: a bare run measured 0 req/s | — | — |",
    );
  });

  it("misses the error goal when any scenario had an error, and the books when a check failed", () => {
    const table = renderGoals([{ ...row("health", 900, 0.9), errors: 3 }], ["money not conserved"]);
    expect(table).toContain("| 0 errors in every scenario | 3 | — | missed |");
    expect(table).toContain(
      "| books: reconciliation clean, seq contiguous, directory caught up, 0 negative | 1 violations | — | missed |",
    );
  });
});

describe("bench/pairs.ts", () => {
  /** A repeatable Math.random stand-in (a linear congruential generator). */
  const seeded = (seed: number) => () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };

  it("samples distinct unordered pairs inside the range, none with itself, none already taken", () => {
    const taken = new Set([pairKey(1, 2), pairKey(4, 3)]);
    const pairs = samplePairs(13, 1, 7, taken, seeded(1)); // 6 people: 15 pairs, 2 taken
    expect(pairs).toHaveLength(13);
    expect(new Set(pairs.map(([a, b]) => pairKey(a, b))).size).toBe(13);
    for (const [a, b] of pairs) {
      expect(a).toBeLessThan(b);
      expect(a).toBeGreaterThanOrEqual(1);
      expect(b).toBeLessThan(7);
      expect(taken.has(pairKey(a, b))).toBe(false);
    }
    expect(() => samplePairs(14, 1, 7, taken)).toThrow(/only 15 pairs/);
  });

  it("hands out every pair without a chat exactly once, then says so", () => {
    const taken = new Set([pairKey(0, 1), pairKey(2, 0), pairKey(7, 8)]); // 7:8 is outside the range
    const next = freshPairs(0, 5, taken, seeded(2)); // 5 people: 10 pairs, 2 taken in range
    const handed = Array.from({ length: 8 }, () => next());
    const keys = handed.map(([a, b]) => pairKey(a, b));
    expect(new Set(keys).size).toBe(8);
    for (const [a, b] of handed) expect(a).not.toBe(b);
    expect(keys.some((key) => taken.has(key))).toBe(false);
    expect(() => next()).toThrow(/every pair/);
  });
});

describe("bench/blocks.ts", () => {
  it("replaces only the named block, keeps the rest, and appends the block where it is missing", () => {
    const text = "intro\n<!-- a:begin -->\nold a\n<!-- a:end -->\nmiddle\n<!-- b:begin -->\nold b\n<!-- b:end -->\nend\n";
    expect(replaceBlock(text, "a", "new $& a")).toBe(
      "intro\n<!-- a:begin -->\nnew $& a\n<!-- a:end -->\nmiddle\n<!-- b:begin -->\nold b\n<!-- b:end -->\nend\n",
    );
    expect(replaceBlock("only text", "c", "x")).toBe("only text\n<!-- c:begin -->\nx\n<!-- c:end -->\n");
  });
});
