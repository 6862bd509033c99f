import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { freePort } from "../test/e2e/support/server.ts";
import {
  appWorker,
  BARE_PATH,
  bareWorker,
  build,
  type Load,
  load,
  migrate,
  ROOT,
  seedUsers,
  workerdThreadCpuMs,
} from "./world.ts";

/**
 * `npm run bench:ab -- <commit> <commit> …`: what a change buys, measured in ONE Miniflare process.
 * Each commit's Worker is built from `git archive` (with this checkout's node_modules), all of them
 * and the bare Worker are served side by side (each commit picked by Miniflare's route-override header, with its own D1
 * and objects), and the scenarios run in rounds, rotating the order: bare, then every commit. So
 * every commit meets the same machine moments; on a shared, noisy machine this is the fair way to
 * compare them. Scenarios: health, users-me, message-send (v2, keyed, into the direct chat of two
 * seeded users; `BENCH_AB_SCENARIOS=health,users-me,message-send` picks some).
 * BENCH_AB_ROUNDS (default 4) rounds of BENCH_AB_SECONDS (default 4) per slot.
 */
const ROUNDS = Number(process.env.BENCH_AB_ROUNDS ?? 4);
const SLOT_SECONDS = Number(process.env.BENCH_AB_SECONDS ?? 4);
const refs = process.argv.slice(2);

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

async function main() {
  if (refs.length < 2) throw new Error("usage: npm run bench:ab -- <commit> <commit> [<commit> …]");
  const dirs: string[] = [];
  let mf: Miniflare | undefined;
  try {
    const variants: {
      name: string;
      ref: string;
      commit: string;
      checkout: string;
      modules: Awaited<ReturnType<typeof build>>;
      outdir: string;
    }[] = [];
    for (const [i, ref] of refs.entries()) {
      const commit = execFileSync("git", ["rev-parse", "--short", ref], { cwd: ROOT, encoding: "utf8" }).trim();
      const checkout = mkdtempSync(path.join(tmpdir(), `credit-chat-ab-${commit}-`));
      const outdir = mkdtempSync(path.join(tmpdir(), `credit-chat-ab-build-${commit}-`));
      dirs.push(checkout, outdir);
      execFileSync("sh", ["-c", `git archive ${commit} | tar -x -C ${checkout}`], { cwd: ROOT });
      symlinkSync(path.join(ROOT, "node_modules"), path.join(checkout, "node_modules"));
      console.log(`bench:ab: building ${commit} …`);
      variants.push({ name: `v${i}`, ref, commit, checkout, modules: await build(outdir, checkout), outdir });
    }
    const listenPort = await freePort();
    mf = new Miniflare(
      convertV4MiniflareOptions({
        host: "127.0.0.1",
        port: listenPort,
        workers: [...variants.map((v) => appWorker(v.name, v.modules, v.outdir, `ab-db-${v.name}`, v.checkout)), bareWorker()],
      }),
    );
    const base = (await mf.ready).origin;
    const port = String(listenPort);
    const tokens: Record<string, string> = {};
    const chatIds: Record<string, string> = {};
    for (const v of variants) {
      const db = await mf.getD1Database("DB", v.name);
      await migrate(db);
      const [user, other] = await seedUsers(db, 2, `ab-${v.name}`);
      tokens[v.name] = user?.token ?? "";
      const chat = await fetch(`${base}/api/v1/chats`, {
        method: "POST",
        headers: { "mf-route-override": v.name, authorization: `Bearer ${tokens[v.name]}`, "content-type": "application/json" },
        body: JSON.stringify({ type: "direct", memberId: other?.id }),
      });
      if (chat.status !== 201) throw new Error(`${v.name} (${v.commit}) answered the chat's creation with ${chat.status}`);
      chatIds[v.name] = ((await chat.json()) as { data: { id: string } }).data.id;
    }
    const picked = process.env.BENCH_AB_SCENARIOS?.split(",");
    const scenarios = [
      { name: "health", load: () => ({ path: "/health" }) },
      { name: "users-me", load: (v: string) => ({ path: "/api/v1/users/me", token: tokens[v] }) },
      {
        name: "message-send",
        load: (v: string): Omit<Load, "worker" | "seconds"> => ({
          method: "POST",
          path: "/api/v2/messages",
          token: tokens[v],
          idempotencyKey: true,
          next: () => ({ body: { chatId: chatIds[v], content: "a/b" } }),
        }),
      },
    ].filter((scenario) => !picked || picked.includes(scenario.name));
    // A wrong route would measure the wrong Worker: check each Worker answers as itself first.
    for (const v of variants) {
      const res = await fetch(`${base}/api/v1/users/me`, {
        headers: { "mf-route-override": v.name, authorization: `Bearer ${tokens[v.name]}` },
      });
      if (res.status !== 200) throw new Error(`${v.name} (${v.commit}) answered users-me with ${res.status}`);
    }

    const ratios: Record<string, Record<string, number[]>> = {};
    const rps: Record<string, Record<string, number[]>> = {};
    // CPU ms of workerd's thread per request: what a request costs, far less sensitive than req/s
    // to what else the shared machine runs at that moment.
    const cpu: Record<string, Record<string, number[]>> = {};
    const bareCpu: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const scenario of scenarios) {
        const bareCpuBefore = workerdThreadCpuMs(port);
        const bare = await load(base, { path: BARE_PATH, seconds: SLOT_SECONDS });
        const bareCpuAfter = workerdThreadCpuMs(port);
        if (bareCpuBefore !== undefined && bareCpuAfter !== undefined) {
          bareCpu.push((bareCpuAfter - bareCpuBefore) / Math.max(bare.requests, 1));
        }
        const order = variants.map((_, i) => variants[(i + round) % variants.length] as (typeof variants)[number]);
        for (const v of order) {
          const cpuBefore = workerdThreadCpuMs(port);
          const r = await load(base, { ...scenario.load(v.name), seconds: SLOT_SECONDS, worker: v.name });
          const cpuAfter = workerdThreadCpuMs(port);
          if (cpuBefore !== undefined && cpuAfter !== undefined) {
            ((cpu[scenario.name] ??= {})[v.name] ??= []).push((cpuAfter - cpuBefore) / Math.max(r.requests, 1));
          }
          if (r.errors) throw new Error(`${v.commit} ${scenario.name}: ${r.errors} errors`);
          ((ratios[scenario.name] ??= {})[v.name] ??= []).push(r.rps / bare.rps);
          ((rps[scenario.name] ??= {})[v.name] ??= []).push(r.rps);
        }
        console.log(
          `  round ${round + 1} ${scenario.name}: bare ${bare.rps.toFixed(0)}/s; ${variants.map((v) => `${v.commit} ${(rps[scenario.name]?.[v.name]?.at(-1) ?? 0).toFixed(0)}/s`).join(", ")}`,
        );
      }
    }
    const lines = [
      `A/B in one Miniflare process, ${ROUNDS} rounds × ${SLOT_SECONDS} s per slot, order rotated each round; median over rounds. The bare Worker: ${bareCpu.length ? median(bareCpu).toFixed(3) : "?"} thread CPU ms / request.`,
      "",
      `| scenario | ${variants.map((v) => `${v.commit} req/s | × bare | thread CPU ms / req`).join(" | ")} |`,
      `|---|${variants.map(() => "---:|---:|---:").join("|")}|`,
      ...scenarios.map(
        (s) =>
          `| ${s.name} | ${variants
            .map(
              (v) =>
                `${median(rps[s.name]?.[v.name] ?? []).toFixed(0)} | ${median(ratios[s.name]?.[v.name] ?? []).toFixed(3)} | ${cpu[s.name]?.[v.name]?.length ? median(cpu[s.name]?.[v.name] ?? []).toFixed(3) : "?"}`,
            )
            .join(" | ")} |`,
      ),
    ];
    console.log(`\n${lines.join("\n")}`);
    return 0;
  } finally {
    await mf?.dispose();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
