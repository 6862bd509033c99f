import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "../test/e2e/support/server.ts";
import { busyPerRequest, type CpuProfile, renderSummary, summarize } from "./summarize-profile.ts";
import { APP_WORKER, BARE_PATH, createWorld, load, ROOT, SECONDS, workerdThreadCpuMs } from "./world.ts";

/**
 * `npm run bench:profile [-- scenario …]`: V8 CPU profiles of the product's isolate (the Worker and
 * its Durable Objects, which workerd runs in one isolate) under each scenario's load, taken
 * through Miniflare's inspector with the Chrome DevTools Protocol (`Profiler.start` /
 * `Profiler.stop`). Writes bench/profiles/<scenario>.cpuprofile (open it in Chrome DevTools →
 * Performance, or `npm run bench:summarize -- <file> <requests>`) and prints sampled ms per
 * request by bucket, and the CPU per request of workerd's thread (all isolates) from /proc.
 * Default scenarios: the hot paths (transfer, message send, users-me, health, chat-list).
 * Profiling slows the isolate; compare buckets with each other, not with bench figures.
 */
const HOT_PATHS = ["transfer-hot-sender", "message-send", "users-me", "health", "chat-list"];
const only = process.argv.slice(2);
const OUT = path.join(ROOT, "bench/profiles");
/** Sampling interval in µs (V8's default is 1000; finer costs more but attributes short frames). */
const INTERVAL_US = Number(process.env.BENCH_PROFILE_INTERVAL_US ?? 200);

type Pending = { resolve: (value: any) => void; reject: (error: Error) => void };

/** A minimal CDP client over Node 22's global WebSocket. */
async function connect(url: string) {
  const socket = new WebSocket(url);
  const pending = new Map<number, Pending>();
  let nextId = 0;
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (message.id === undefined) return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter?.reject(new Error(message.error.message));
    else waiter?.resolve(message.result);
  });
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error(`cannot open the inspector at ${url}`)), { once: true });
  });
  return {
    send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
      const id = ++nextId;
      socket.send(JSON.stringify({ id, method, params }));
      return new Promise<T>((resolve, reject) => pending.set(id, { resolve, reject }));
    },
    close: () => socket.close(),
  };
}

async function main() {
  const inspectorPort = await freePort();
  const world = await createWorld({ inspectorPort });
  try {
    // workerd's own inspector: one target per isolate. The product (Worker + its Durable Objects),
    // Miniflare's D1 simulator (SQLite behind the D1 binding) and Miniflare's entry router share the
    // machine with the load; all three are profiled, the product's by bucket.
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as {
      id: string;
      webSocketDebuggerUrl: string;
    }[];
    const isolates = { app: `core:user:${APP_WORKER}`, bare: "core:user:bench-bare", d1: "d1:db", entry: "core:entry" } as const;
    const sessions = await Promise.all(
      Object.entries(isolates).map(async ([role, id]) => {
        const target = targets.find((t) => t.id === id);
        if (!target) throw new Error(`no inspector target ${id}: ${targets.map((t) => t.id).join(", ")}`);
        const cdp = await connect(target.webSocketDebuggerUrl);
        await cdp.send("Profiler.enable");
        await cdp.send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
        return { role: role as keyof typeof isolates, cdp };
      }),
    );
    mkdirSync(OUT, { recursive: true });
    if (world.sourceMap) writeFileSync(path.join(OUT, "index.js.map"), world.sourceMap);

    const names = only.length ? only : HOT_PATHS;
    const reports: string[] = [];
    for (const name of ["bare", ...names]) {
      const spec = name === "bare" ? { path: BARE_PATH } : world.scenarios.find((s) => s.name === name)?.load;
      if (!spec) throw new Error(`no scenario ${name}; known: ${world.scenarios.map((s) => s.name).join(", ")}`);
      // Warm the paths (JIT, first-use objects) so the profile shows the steady state.
      await load(world.base, { ...spec, seconds: 2 });
      await Promise.all(sessions.map((s) => s.cdp.send("Profiler.start")));
      const port = new URL(world.base).port;
      const cpuBefore = workerdThreadCpuMs(port);
      const r = await load(world.base, spec);
      const cpuAfter = workerdThreadCpuMs(port);
      const profiles = await Promise.all(
        sessions.map(async (s) => ({
          role: s.role,
          profile: (await s.cdp.send<{ profile: CpuProfile }>("Profiler.stop")).profile,
        })),
      );
      let report = "";
      const others: string[] = [];
      const labels = {
        bare: "bare Worker isolate",
        d1: "D1 simulator isolate (d1:db)",
        entry: "Miniflare entry isolate (core:entry)",
      };
      for (const { role, profile } of profiles) {
        const file = path.join(OUT, `${name}.${role}.cpuprofile`);
        writeFileSync(file, JSON.stringify(profile));
        const summary = summarize(profile, r.requests, role === "app" ? world.sourceMap : undefined);
        if (role === "app" && name !== "bare") {
          report = renderSummary(name, summary, { requests: r.requests, rps: r.rps, errors: r.errors, seconds: SECONDS });
        } else if (role !== "app") {
          others.push(`${labels[role]} ${busyPerRequest(summary).toFixed(3)}`);
        }
      }
      if (!report) report = `### bare: ${r.requests} requests in ${SECONDS} s (${r.rps.toFixed(0)}/s under the profiler)`;
      const threadMs =
        cpuBefore === undefined || cpuAfter === undefined
          ? "unknown"
          : ((cpuAfter - cpuBefore) / Math.max(r.requests, 1)).toFixed(3);
      report += `\n\nworkerd's main thread (every isolate, the runtime, the sockets; /proc, 10 ms ticks): ${threadMs} CPU ms / request. Other isolates' own samples (they overlap: not additive): ${others.join("; ")}.`;
      console.log(`\n${report}\n(profiles: ${path.relative(ROOT, OUT)}/${name}.*.cpuprofile)`);
      reports.push(report);
    }
    for (const s of sessions) s.cdp.close();
    writeFileSync(path.join(OUT, "summary.md"), `${reports.join("\n\n")}\n`);
    console.log(`\nbench:profile: profiles and summary.md in ${path.relative(ROOT, OUT)}/`);
    return 0;
  } finally {
    await world.dispose();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
