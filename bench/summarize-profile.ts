import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import path from "node:path";

/**
 * Attributes a V8 CPU profile of the product's isolate to buckets of work and prints sampled ms
 * per request per bucket. V8 samples on a timer: a sample taken while the OS has the thread
 * descheduled (a loaded machine) still lands on the current frame, so the absolute figures
 * are wall time spent in each frame, inflated by load; the shares are what to compare, and the
 * thread's real CPU per request comes from /proc (bench/profile.ts prints it). A sample's self time goes to the bucket of its own frame; a frame that tells
 * nothing by itself (a builtin or native function with no script, such as SubtleCrypto's `verify`
 * or a Promise job) inherits the bucket of the nearest caller that does, except JSON.parse /
 * JSON.stringify ("JSON") and an object's SQLite calls (`exec`, `transactionSync`: "object RPC +
 * storage"). Frames of the bundle are placed by their original
 * source file through the bundle's source map (wrangler writes one beside index.js).
 *
 *   node bench/summarize-profile.ts bench/profiles/<scenario>.cpuprofile <requests> [index.js.map]
 */

export type CpuProfile = {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
};

export const BUCKETS = [
  "JWT + crypto",
  "zod validation",
  "Drizzle query building",
  "D1 calls",
  "wallet object (own code)",
  "object RPC + storage",
  "JSON",
  "realtime publish",
  "rate limiter",
  "hono + routing + middleware",
  "product code (other)",
  "bench meter",
  "GC",
  "other",
] as const;
export type Bucket = (typeof BUCKETS)[number];

export type Summary = {
  /** Sampled thread time that was not idle, ms. */
  busyMs: number;
  idleMs: number;
  wallMs: number;
  perBucketMs: Record<Bucket, number>;
  /** The heaviest frames by self time: where to look inside a bucket. */
  topFrames: { frame: string; bucket: Bucket; ms: number }[];
};

/** Which bucket a source file (original path from the source map, or a script URL) belongs to. */
function bucketOfSource(source: string): Bucket | undefined {
  const s = source.replaceAll("\\", "/");
  // bench/units.js, served in front of the bundle (bench/meter.ts): the bench's own cost, not the product's.
  if (/__bench_(units|entry)\.js$/.test(s)) return "bench meter";
  if (/hono\/dist\/.*(jwt|jws|jwa|crypto|utils\/encode)/.test(s) || /src\/(lib\/jwt|middlewares\/auth)\.ts/.test(s))
    return "JWT + crypto";
  if (s.includes("node_modules/zod/") || s.includes("node_modules/@hono/zod-validator")) return "zod validation";
  // Drizzle's own source maps resolve to node_modules/src/… (its package ships maps to ../src).
  if (/node_modules\/(drizzle-orm\/|src\/)d1\//.test(s)) return "D1 calls";
  if (/node_modules\/(drizzle-orm|src)\//.test(s)) return "Drizzle query building";
  if (/d1|cloudflare-internal:d1/i.test(s) && !s.includes("src/")) return "D1 calls";
  if (s.includes("src/durable-objects/wallet/")) return "wallet object (own code)";
  if (/src\/(durable-objects\/realtime|services\/realtime|services\/transfer-events)/.test(s)) return "realtime publish";
  if (/src\/(durable-objects\/rate-limiter|middlewares\/rate-limit|lib\/sliding-window)/.test(s)) return "rate limiter";
  if (s.includes("node_modules/hono/") || s.includes("node_modules/@hono/")) return "hono + routing + middleware";
  if (s.includes("src/")) return "product code (other)";
  if (/cloudflare-internal:|workerd|node-internal:/.test(s)) return "object RPC + storage";
  return undefined;
}

export function summarize(profile: CpuProfile, requests: number, sourceMap?: string): Summary {
  const map = sourceMap ? new SourceMap(JSON.parse(sourceMap)) : undefined;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const sourceOf = (n: CpuProfile["nodes"][number]): string => {
    const { url, lineNumber, columnNumber } = n.callFrame;
    if (map && url && /index\.js$/.test(url) && lineNumber >= 0) {
      const entry = map.findEntry(lineNumber, columnNumber) as { originalSource?: string };
      if (entry?.originalSource) return entry.originalSource;
    }
    return url;
  };
  const ownBucket = (n: CpuProfile["nodes"][number]): Bucket | "idle" | undefined => {
    const { functionName, url } = n.callFrame;
    if (functionName === "(idle)") return "idle";
    if (functionName === "(garbage collector)") return "GC";
    if (functionName === "(program)" || functionName === "(root)") return "other";
    if (!url && /^(parse|stringify)$/.test(functionName) && isJsonCall(n)) return "JSON";
    // SQLite storage inside an object (ctx.storage.sql.exec, transactionSync) is native code.
    if (!url && /^(exec|transactionSync|databaseSize)$/.test(functionName)) return "object RPC + storage";
    if (!url) return undefined;
    return bucketOfSource(sourceOf(n));
  };
  // JSON.parse/stringify are builtins with no URL: told apart from other `parse`s by their caller.
  const isJsonCall = (n: CpuProfile["nodes"][number]) => {
    const p = byId.get(parent.get(n.id) ?? -1);
    return !p || !/URL|Date/i.test(p.callFrame.functionName);
  };
  const memo = new Map<number, Bucket | "idle">();
  const bucketOf = (id: number): Bucket | "idle" => {
    const known = memo.get(id);
    if (known) return known;
    const n = byId.get(id);
    let bucket: Bucket | "idle" = "other";
    if (n) {
      const own = ownBucket(n);
      // A frame with no script (builtin, native, Promise job) belongs to whoever called it.
      bucket = own ?? (parent.has(id) ? bucketOf(parent.get(id) as number) : "other");
      if (own === undefined && bucket === "idle") bucket = "other";
    }
    memo.set(id, bucket);
    return bucket;
  };

  const perBucketUs = Object.fromEntries(BUCKETS.map((b) => [b, 0])) as Record<Bucket, number>;
  const perFrameUs = new Map<string, { bucket: Bucket; us: number }>();
  let idleUs = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    // A sample's duration is the gap to the next sample (the last one gets the previous gap).
    const us = timeDeltas[i + 1] ?? timeDeltas[i] ?? 0;
    const id = samples[i] as number;
    const bucket = bucketOf(id);
    if (bucket === "idle") {
      idleUs += us;
      continue;
    }
    perBucketUs[bucket] += us;
    const n = byId.get(id);
    if (!n) continue;
    const src = sourceOf(n);
    const frame = `${n.callFrame.functionName || "(anonymous)"} ${src ? path.basename(src) : "(native)"}`;
    const entry = perFrameUs.get(frame) ?? { bucket, us: 0 };
    entry.us += us;
    perFrameUs.set(frame, entry);
  }
  const busyUs = Object.values(perBucketUs).reduce((a, b) => a + b, 0);
  const per = (us: number) => us / 1000 / Math.max(requests, 1);
  return {
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    wallMs: (profile.endTime - profile.startTime) / 1000,
    perBucketMs: Object.fromEntries(BUCKETS.map((b) => [b, per(perBucketUs[b])])) as Record<Bucket, number>,
    topFrames: [...perFrameUs.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, 12)
      .map(([frame, { bucket, us }]) => ({ frame, bucket, ms: per(us) })),
  };
}

/** Everything the isolate did per request, whatever the bucket. */
export function busyPerRequest(summary: Summary): number {
  return Object.values(summary.perBucketMs).reduce((a, b) => a + b, 0);
}

export function renderSummary(
  name: string,
  summary: Summary,
  run: { requests: number; rps: number; errors: number; seconds: number },
): string {
  const total = busyPerRequest(summary);
  const fmt = (ms: number) => ms.toFixed(3);
  const lines = [
    `### ${name}: ${run.requests} requests in ${run.seconds} s (${run.rps.toFixed(0)}/s under the profiler, ${run.errors} errors); isolate busy ${((summary.busyMs / summary.wallMs) * 100).toFixed(0)} % of ${summary.wallMs.toFixed(0)} ms`,
    "",
    "| bucket | sampled ms / request | share |",
    "|---|---:|---:|",
    ...BUCKETS.filter((b) => summary.perBucketMs[b] > 0).map(
      (b) => `| ${b} | ${fmt(summary.perBucketMs[b])} | ${((summary.perBucketMs[b] / total) * 100).toFixed(0)} % |`,
    ),
    `| **total in this isolate** | **${fmt(total)}** | |`,
    "",
    `Heaviest frames (self ms / request): ${summary.topFrames
      .slice(0, 8)
      .map((f) => `${f.frame} ${fmt(f.ms)} [${f.bucket}]`)
      .join("; ")}`,
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const [file, requests, mapFile] = process.argv.slice(2);
  if (!file || !requests) {
    console.error("usage: node bench/summarize-profile.ts <file.cpuprofile> <requests> [index.js.map]");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const defaultMap = path.join(path.dirname(file), "index.js.map");
  let map: string | undefined;
  try {
    map = readFileSync(mapFile ?? defaultMap, "utf8");
  } catch {
    map = undefined;
  }
  const summary = summarize(profile, Number(requests), map);
  console.log(
    renderSummary(path.basename(file, ".cpuprofile"), summary, { requests: Number(requests), rps: 0, errors: 0, seconds: 0 }),
  );
}
