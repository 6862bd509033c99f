import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replaceBlock } from "../../bench/blocks.ts";
import { renderCosts, unitFields, withoutTriggerRows } from "../../bench/costs.ts";
import { type Row, renderGoals } from "../../bench/goals.ts";
import { meteredEntry } from "../../bench/meter.ts";
import { freshPairs, pairKey, samplePairs } from "../../bench/pairs.ts";
import { addUnits, costPerMillion, perRequest, sumUnits, type Units, zeroUnits } from "../../bench/pricing.ts";
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

describe("bench/summarize-profile.ts and the meter", () => {
  it("puts the meter's own frames (bench/units.js served in front of the bundle) in a bucket of their own", () => {
    const nodes = [
      frame(1, "(root)", "", [2]),
      frame(2, "value", "file:///tmp/build/__bench_units.js", [3]),
      frame(3, "send", "file:///app/src/services/chat-objects.ts"),
    ];
    const summary = summarize(
      profileOf(nodes, [
        [2, 2],
        [3, 3],
      ]),
      1,
    );
    expect(summary.perBucketMs["bench meter"]).toBeCloseTo(2);
    expect(summary.perBucketMs["product code (other)"]).toBeCloseTo(3);
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
      "| transfer-random-pairs ≥ 0.8× bare-transfer-random-pairs | 0.67× the floor (40 vs 45 req/s), p99 380 ms | 0.045× bare, p99 10 ms | missed by 1.20× |",
    );
    expect(table).toContain(
      "| transfer-hot-recipient ≥ 1× bare-transfer-hot-recipient, p99 ≤ 300 ms | 0.50× the floor (30 vs 60 req/s), p99 250 ms | 0.04× bare, p99 90 ms | missed by 2.00×; tail met |",
    );
    expect(table).toContain(
      "| transfer-first-pair ≥ 0.8× bare-transfer-first-pair | 0.01× bare, p99 900 ms | not measured in this run | — |",
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

  it("judges issue 27's fan-out tail and the D1 queries of the directory reads", () => {
    const withUnits = (name: string, d1Queries: number, d1Calls: number): Row => ({
      ...row(name, 100, 0.1),
      d1QueriesPerRequest: d1Queries,
      units: {
        workerRequests: 1,
        doRequests: 0,
        d1Queries,
        d1Calls,
        d1QueriesBehind: 0,
        d1RowsRead: 1,
        d1RowsWritten: 0,
        doRowsRead: 0,
        doRowsWritten: 0,
      },
    });
    const table = renderGoals(
      [withUnits("chat-list", 2, 1), withUnits("users-me", 1, 1), withUnits("message-send", 0.06, 0.03)],
      [],
      {
        allMembersMs: { median: 24, p99: 124 },
      },
    );
    expect(table).toContain(
      "| realtime fan-out to 100 connected members: p99 ≤ 50 ms | p99 124 ms (median 24 ms) | — | missed by 2.48× |",
    );
    expect(table).toContain(
      "| chat-list: D1 queries per request ≤ 1 (on the request path) | 2 (0 more behind the answers; 1 round trips in all) | — | missed |",
    );
    expect(table).toContain(
      "| users-me: D1 queries per request ≤ 1 (on the request path) | 1 (0 more behind the answers; 1 round trips in all) | — | met |",
    );
    expect(table).toContain(
      "| message-send: D1 queries per request = 0 (on the request path) | 0.06 (0 more behind the answers; 0.03 round trips in all) | — | missed |",
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

describe("bench/pricing.ts", () => {
  const units = (over: Partial<Units>): Units => ({ ...zeroUnits(), ...over });

  it("prices a million requests from the units one request uses, at Workers Paid prices", () => {
    // 1,000 requests: 3 object calls each, 200 incoming WebSocket messages (20:1), 5 D1 rows read
    // and 2 written, 10 object rows read and 25 written, each.
    const per = perRequest(
      units({
        workerRequests: 1000,
        doRequests: 3000,
        doWebSocketMessages: 200,
        d1Queries: 2000,
        d1Calls: 1000,
        d1RowsRead: 5000,
        d1RowsWritten: 2000,
        doRowsRead: 10_000,
        doRowsWritten: 25_000,
      }),
      1000,
    );
    expect(per).toEqual({
      workerRequests: 1,
      doRequests: 3.01,
      d1Queries: 2,
      d1Calls: 1,
      d1QueriesBehind: 0,
      d1RowsRead: 5,
      d1RowsWritten: 2,
      doRowsRead: 10,
      doRowsWritten: 25,
    });
    const cost = costPerMillion(per);
    // $0.30 + 3.01 × $0.15 + 5 × $0.001 + 2 × $1 + 10 × $0.001 + 25 × $1
    expect(cost.total).toBeCloseTo(27.7665, 4);
    expect(cost.parts.doRowsWritten).toBeCloseTo(25);
    expect(cost.parts.doRequests).toBeCloseTo(0.4515);
    // The example: 25 storage rows written where the floor writes 7 cost $18 more per million.
    const floor = costPerMillion({ ...per, doRowsWritten: 7 });
    expect(cost.total - floor.total).toBeCloseTo(18);
  });

  it("adds and subtracts readings field by field, bindings too, and never divides by zero requests", () => {
    const a = units({ workerRequests: 5, doRequests: 4, doRequestsByClass: { WalletDO: 3, ChatDO: 1 }, doRowsWritten: 9 });
    const b = units({ workerRequests: 2, doRequests: 1, doRequestsByClass: { WalletDO: 1 }, doRowsWritten: 4 });
    expect(addUnits(a, b, -1)).toEqual(
      units({ workerRequests: 3, doRequests: 3, doRequestsByClass: { WalletDO: 2, ChatDO: 1 }, doRowsWritten: 5 }),
    );
    expect(sumUnits([a, b]).doRequestsByClass).toEqual({ WalletDO: 4, ChatDO: 1 });
    expect(perRequest(zeroUnits(), 0).doRowsWritten).toBe(0);
  });

  it("takes the counting triggers' own D1 rows out of a scenario's meter, never below zero", () => {
    const metered = units({ workerRequests: 139, d1Queries: 124, d1RowsRead: 248, d1RowsWritten: 253 });
    expect(withoutTriggerRows(metered, 124)).toEqual({ ...metered, d1RowsRead: 124, d1RowsWritten: 129 });
    expect(withoutTriggerRows(units({ d1RowsWritten: 3 }), 5).d1RowsWritten).toBe(0);
  });

  it("writes a scenario's units, D1 queries and cost into its row, and the table beside its floor and the baseline", () => {
    const scenario = unitFields(
      units({ workerRequests: 100, doRequests: 300, doRequestsByClass: { WalletDO: 200, ChatDO: 100 }, doRowsWritten: 2500 }),
    );
    expect(scenario).toMatchObject({ unitRequests: 100, d1QueriesPerRequest: 0, doRequestsByClass: { WalletDO: 2, ChatDO: 1 } });
    expect(scenario.costPerMillion).toBeCloseTo(0.3 + 3 * 0.15 + 25);
    const floor = unitFields(units({ workerRequests: 10, doRequests: 30, doRowsWritten: 70 }));
    const row = (name: string, fields: Partial<Row>): Row => ({
      name,
      requests: 100,
      rps: 10,
      p50Ms: 1,
      p99Ms: 2,
      errors: 0,
      ratioToBare: 0.1,
      bareRps: 100,
      ...fields,
    });
    const rows = [row("transfer-random-pairs", scenario), row("bare-transfer-random-pairs", floor)];
    const before = {
      commit: "abc1234",
      at: "2026-12-07T09:00:00Z",
      note: "",
      scenarios: { "transfer-random-pairs": { costPerMillion: 40 } },
    };
    const table = renderCosts(rows, before);
    expect(table).toContain(
      "| transfer-random-pairs | 1 | 3 | 0 + 0 (0) | 0 | 0 | 0 | 25 | $25.75 | bare-transfer-random-pairs | $7.750 | 3.32 | $40.00 |",
    );
    const goals = renderGoals(rows, []);
    expect(goals).toContain(
      "| transfer-random-pairs: D1 queries per request = 0 (on the request path) | 0 (0 more behind the answers; 0 round trips in all) | — | met |",
    );
    expect(goals).toContain(
      "| transfer-random-pairs: cost per million ≤ 1.5× bare-transfer-random-pairs's | $25.75 (3.32× the floor) | $7.750 | missed by 2.22× |",
    );
  });
});

/**
 * bench/units.js in a real Miniflare: a small worker with an object and D1, served behind the
 * meter's entry exactly as the bench serves the product, and the units it counts for known work.
 */
describe("bench/units.js", () => {
  const worker = `
import { DurableObject } from "cloudflare:workers";
export class Tiny extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)");
  }
  write(n) {
    for (let i = 0; i < n; i++) this.ctx.storage.sql.exec("INSERT INTO t (v) VALUES ('x')");
    return this.ctx.storage.sql.exec("SELECT k FROM t").toArray().length;
  }
  kv() {
    this.ctx.storage.kv.put("a", 1);
    return this.ping(this.ctx.storage.kv.get("a"));
  }
  ping(value) {
    return value;
  }
  viaStub(stub) {
    return stub.ping("pong");
  }
  later() {
    return new Promise((resolve) => setTimeout(() => resolve(this.ping("later")), 5));
  }
  async asyncKv() {
    await this.ctx.storage.put({ b: 1, c: 2 });
    await this.ctx.storage.setAlarm(Date.now() + 60_000);
    return (await this.ctx.storage.get(["b", "c"])).size;
  }
  soon() {
    return this.ctx.storage.setAlarm(Date.now() + 10);
  }
  async alarm() {
    await this.env.DB.prepare("SELECT v FROM x").all();
  }
  call(other) {
    return this.env.TINY.get(this.env.TINY.idFromName(other)).write(1);
  }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/d1") {
      await env.DB.prepare("INSERT INTO x (v) VALUES (?), (?)").bind(1, 2).run();
      await env.DB.batch([env.DB.prepare("SELECT v FROM x"), env.DB.prepare("SELECT v FROM x")]);
      await env.DB.prepare("SELECT v FROM x").first("v");
      await env.DB.prepare("SELECT v FROM x").raw();
      // The Sessions API (read replication) goes through a session of its own.
      await env.DB.withSession("first-primary").prepare("SELECT v FROM x").all();
      return new Response("d1");
    }
    const stub = env.TINY.get(env.TINY.idFromName(url.searchParams.get("name") ?? "a"));
    if (url.pathname === "/later") return new Response(await stub.later());
    if (url.pathname === "/via") {
      return new Response(await stub.viaStub(env.TINY.get(env.TINY.idFromName("d"))));
    }
    if (url.pathname === "/soon") {
      await stub.soon();
      return new Response("soon");
    }
    await stub.write(3);
    await stub.kv();
    await stub.asyncKv();
    await stub.call("b");
    return new Response("do");
  },
};
`;
  let dir: string;
  let mf: Miniflare;
  const meter = async () => (await (await mf.dispatchFetch("http://bench/__bench/units")).json()) as Units;
  /** The units `path` uses, read around it on the meter. */
  const around = async (path: string) => {
    const before = await meter();
    const res = await mf.dispatchFetch(`http://bench${path}`);
    await res.text();
    return addUnits(await meter(), before, -1);
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "bench-units-test-"));
    writeFileSync(path.join(dir, "tiny.js"), worker);
    mf = new Miniflare(
      convertV4MiniflareOptions({
        modules: [
          ...meteredEntry(dir, "tiny.js", { TINY: "Tiny" }, []),
          { type: "ESModule", path: path.join(dir, "tiny.js"), contents: worker },
        ],
        modulesRoot: dir,
        compatibilityDate: "2026-11-01",
        compatibilityFlags: ["nodejs_als"],
        d1Databases: { DB: "bench-units-test" },
        durableObjects: { TINY: { className: "Tiny", useSQLite: true } },
      }),
    );
    await (await mf.getD1Database("DB")).exec("CREATE TABLE x (v INTEGER)");
  }, 60_000);
  afterAll(async () => {
    await mf?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("counts D1 statements, round trips and the rows D1 reports, through every method of the binding", async () => {
    const d1 = await around("/d1");
    // 6 statements in 5 calls (a batch of two is one); the insert writes 2 rows, each SELECT scans
    // the 2 rows (first() and raw() included, whose public answers drop D1's meta).
    expect(d1).toMatchObject({
      workerRequests: 1,
      d1Queries: 6,
      d1Calls: 5,
      d1QueriesBehind: 0,
      d1RowsWritten: 2,
      d1RowsRead: 10,
    });
    expect(d1.doRequests).toBe(0);
  });

  it("lists the request paths' D1 statements by their SQL, batches too, never an alarm's (BENCH_D1_SQL)", async () => {
    const sql = async () => (await (await mf.dispatchFetch("http://bench/__bench/d1-sql")).json()) as Record<string, number>;
    const before = await sql();
    await (await mf.dispatchFetch("http://bench/d1")).text();
    const after = await sql();
    const made = Object.fromEntries(
      Object.entries(after)
        .map(([text, n]) => [text, n - (before[text] ?? 0)] as const)
        .filter(([, n]) => n > 0),
    );
    expect(made).toEqual({ "INSERT INTO x (v) VALUES (?), (?)": 1, "SELECT v FROM x": 5 });
  });

  it("counts object requests (Worker → object and object → object) and the storage rows read and written", async () => {
    await around("/do"); // creates both objects' tables (DDL is counted too, but not asserted)
    const warm = await around("/do");
    // write, kv, asyncKv and call from the Worker; call's write on the other object (kv's own
    // call to its ping is not a request).
    expect(warm).toMatchObject({ workerRequests: 1, doRequests: 5, doRequestsByClass: { Tiny: 5 } });
    // Written: 3 inserts, kv.put, put of 2 keys, setAlarm; on the other object 1 insert.
    expect(warm.doRowsWritten).toBe(3 + 1 + 2 + 1 + 1);
    // Read: the 6 rows so far in a's table, kv.get, get of 2 keys; the other object's 2 rows.
    expect(warm.doRowsRead).toBe(6 + 1 + 2 + 2);
    expect(warm.d1Queries).toBe(0);
  });

  it("does not count an object's own calls from a timer it set while serving a call", async () => {
    const later = await around("/later");
    expect(later).toMatchObject({ workerRequests: 1, doRequests: 1 });
  });

  it("leaves stubs the runtime's own: one handed to a call as an argument works, and its calls count", async () => {
    const before = await meter();
    const res = await mf.dispatchFetch("http://bench/via");
    expect(await res.text()).toBe("pong");
    expect(addUnits(await meter(), before, -1)).toMatchObject({ workerRequests: 1, doRequests: 2 });
  });

  it("counts an alarm's run as an object request and its D1 queries as behind the answers, and never counts its own path", async () => {
    const before = await meter();
    await (await mf.dispatchFetch("http://bench/soon?name=c")).text();
    let after = await meter();
    for (let i = 0; i < 50 && after.doAlarms === before.doAlarms; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await meter();
    }
    const delta = addUnits(after, before, -1);
    expect(delta).toMatchObject({
      workerRequests: 1,
      doAlarms: 1,
      doRequests: 2,
      d1Queries: 1,
      d1QueriesBehind: 1,
      d1CallsBehind: 1,
    });
    expect(delta.doRequestsByClass).toEqual({ Tiny: 1, "Tiny alarms": 1 });
  });
});
