import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { replaceBlock } from "./blocks.ts";
import { readBaseline, renderCosts, unitFields, withoutTriggerRows, writeBaseline } from "./costs.ts";
import { type Row, renderGoals } from "./goals.ts";
import { dollars } from "./pricing.ts";
import { type FanoutResult, measureGroupFanout } from "./realtime-fanout.ts";
import {
  BARE_PATH,
  BARE_SECONDS,
  BENCH_VARS,
  CONNECTIONS,
  checkInvariants,
  countD1RowsWritten,
  countUnits,
  createWorld,
  load,
  ROOT,
  readD1Sql,
  SECONDS,
} from "./world.ts";

/**
 * `npm run bench [-- scenario …]`: every scenario of bench/world.ts, each right after a run of the
 * bare Worker served by the same Miniflare process, so every figure is also a ratio to the bare
 * runtime measured moments before on the same (shared, noisy) machine. A scenario marked
 * `countD1Writes` also reports the D1 rows written per request answered; every scenario reports its
 * billable units per request and their price per million requests (bench/units.js, bench/pricing.ts),
 * also as a table beside its floor's and the baseline's (bench/cost-before.json). After the load the books
 * are checked (money conserved, no negative balance, every chat's seq contiguous, the directory
 * caught up with the chat objects) and the run fails if not. A full run writes
 * bench/results.json, the block in bench/README.md and the short table in README.md.
 */
const only = process.argv.slice(2);

async function main() {
  const started = Date.now();
  const world = await createWorld();
  try {
    const { base } = world;
    const rows: Row[] = [];
    const loadBefore = loadavg()[0] ?? 0;
    for (const scenario of world.scenarios) {
      if (only.length && !only.includes(scenario.name)) continue;
      // The scenario's billable units are counted from right after its bare run (the bare Worker is not metered).
      // BENCH_D1_SQL=1: which statements this scenario's request paths sent to D1 (bench/units.js).
      const sqlBefore = process.env.BENCH_D1_SQL ? await readD1Sql(base) : undefined;
      const runBoth = async () => {
        const bare = await load(base, { path: BARE_PATH, seconds: BARE_SECONDS });
        const { result: r, units } = await countUnits(base, () => load(base, scenario.load));
        return { bare, r, units };
      };
      // The bare Worker writes no D1, so counting around both keeps the scenario right after its bare run.
      const counted = scenario.countD1Writes ? await countD1RowsWritten(world.db, runBoth) : undefined;
      const { bare, r, units: metered } = counted ? counted.result : await runBoth();
      const units = counted ? withoutTriggerRows(metered, counted.rowsWritten) : metered;
      const row: Row = {
        name: scenario.name,
        ...r,
        rps: Number(r.rps.toFixed(1)),
        ratioToBare: Number((r.rps / bare.rps).toFixed(3)),
        bareRps: Number(bare.rps.toFixed(1)),
        ...unitFields(units),
      };
      if (counted) {
        row.d1RowsWritten = counted.rowsWritten;
        row.d1RowsWrittenPerRequest = Number((counted.rowsWritten / Math.max(r.requests - r.errors, 1)).toFixed(3));
        row.d1RowsWrittenByTable = counted.byTable;
      }
      rows.push(row);
      if (sqlBefore) {
        const after = await readD1Sql(base);
        for (const [sql, n] of Object.entries(after)) {
          const made = n - (sqlBefore[sql] ?? 0);
          if (made <= 0) continue;
          // bench/units.js: the listing's object rows, keyed "object rows read by: <sql>" (or written).
          if (sql.startsWith("object rows ")) {
            console.log(`  ${row.name.padEnd(24)} ${(made / r.requests).toFixed(2)} ${sql} (per request)`);
          } else console.log(`  ${row.name.padEnd(24)} D1 on the request path: ${made} × ${sql}`);
        }
      }
      console.log(
        `  ${row.name.padEnd(24)} units per request ${JSON.stringify(row.units)}, ${dollars(row.costPerMillion ?? 0)} per million`,
      );
      console.log(
        `  ${row.name.padEnd(24)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${String(r.p50Ms).padStart(5)} ms  p99 ${String(r.p99Ms).padStart(5)} ms  errors ${r.errors}  ×bare ${row.ratioToBare} (bare ${bare.rps.toFixed(0)}/s, ${bare.errors} errors)${counted ? `  D1 rows written ${counted.rowsWritten} (${row.d1RowsWrittenPerRequest} per request answered; ${JSON.stringify(counted.byTable)})` : ""}`,
      );
    }

    // Realtime (issue 8): one message to a 100-member group, every member connected.
    let realtimeFanout: FanoutResult | undefined;
    if (!only.length || only.includes("realtime-fanout")) {
      realtimeFanout = await measureGroupFanout(base, { members: 100, rounds: 20 });
      console.log(
        `  realtime-fanout-100      all members have it: median ${realtimeFanout.allMembersMs.median} ms, p99 ${realtimeFanout.allMembersMs.p99} ms (health median ${realtimeFanout.healthMs.median} ms)`,
      );
    }

    const problems = await checkInvariants(world);

    const machine = `${cpus().length}× ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${process.platform}; 1-min load average ${loadBefore.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end`;
    const results = {
      scenarios: rows,
      machine,
      at: new Date().toISOString(),
      connections: CONNECTIONS,
      secondsPerScenario: SECONDS,
      bareSecondsPerScenario: BARE_SECONDS,
      vars: BENCH_VARS,
      realtimeFanout,
      invariantViolations: problems,
    };
    if (!only.length) writeFileSync(path.join(ROOT, "bench/results.json"), `${JSON.stringify(results, null, 2)}\n`);
    // BENCH_BASELINE=<commit>: this run's units and costs become the "before" column (bench/cost-before.json).
    if (process.env.BENCH_BASELINE) writeBaseline(rows, process.env.BENCH_BASELINE, results.at);
    let table = renderTable(rows, results);
    if (realtimeFanout) {
      const f = realtimeFanout;
      table += `\n\nRealtime fan-out (100-member group, all connected, ${f.rounds} messages): every member has the frame after median ${f.allMembersMs.median} ms, p99 ${f.allMembersMs.p99} ms; single deliveries median ${f.eachDeliveryMs.median} ms; the send itself median ${f.sendMs.median} ms; /health median ${f.healthMs.median} ms.`;
    }
    table += `\n\n${renderCosts(rows, readBaseline(ROOT))}`;
    table += `\n\n${renderGoals(rows, problems, realtimeFanout)}`;
    console.log(`\n${table}`);
    if (!only.length) {
      writeBlock("bench/README.md", "bench:results", table);
      writeBlock("README.md", "bench:latest", renderSummary(rows, results));
    }
    console.log(`bench: done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    if (problems.length) {
      console.error(`bench: INVARIANTS VIOLATED\n  ${problems.join("\n  ")}`);
      return 1;
    }
    console.log("bench: invariants hold (money conserved, no negative balance, seq contiguous, directory caught up)");
    return 0;
  } finally {
    await world.dispose();
  }
}

function renderTable(rows: Row[], results: { machine: string; at: string; connections: number; secondsPerScenario: number }) {
  const lines = [
    `Measured ${results.at} on ${results.machine}; autocannon ${results.connections} connections, ${results.secondsPerScenario} s per scenario, each right after a ${BARE_SECONDS} s run of the bare Worker (same Miniflare process).`,
    "",
    "| scenario | requests | req/s | p50 ms | p99 ms | errors | bare req/s | × bare |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors} | ${r.bareRps.toFixed(0)} | ${r.ratioToBare} |`,
    ),
    ...rows
      .filter((r) => r.d1RowsWritten !== undefined)
      .map(
        (r) =>
          `\n${r.name}: ${r.d1RowsWritten} D1 rows written during the scenario and its bare run (counted by triggers on every table, until 1 s after the load for the directory to catch up; by table: ${Object.entries(
            r.d1RowsWrittenByTable ?? {},
          )
            .map(([table, n]) => `${table} ${n}`)
            .join(", ")}), ${r.d1RowsWrittenPerRequest} per send answered.`,
      ),
  ];
  return lines.join("\n");
}

/** The project README's short table: what the run measured, the command, and where the rest is. */
function renderSummary(rows: Row[], results: { machine: string; at: string; connections: number; secondsPerScenario: number }) {
  return [
    `Latest figures (\`npm run bench\`, ${results.at}, on ${results.machine}; ${results.connections} connections, ${results.secondsPerScenario} s per scenario; the run before it, the cost table and the verdict against the goals are in bench/README.md):`,
    "",
    "| scenario | req/s | p50 ms | p99 ms | errors | × bare | D1 queries per request | $ per million |",
    "|---|--:|--:|--:|--:|--:|--:|--:|",
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors} | ${r.ratioToBare} | ${r.d1QueriesPerRequest ?? "—"} | ${r.costPerMillion === undefined ? "—" : dollars(r.costPerMillion)} |`,
    ),
  ].join("\n");
}

/** Rewrites `relative`'s generated block `marker` (bench/blocks.ts) with `content`, formatted as biome formats Markdown. */
function writeBlock(relative: string, marker: string, content: string) {
  const file = path.join(ROOT, relative);
  writeFileSync(file, replaceBlock(readFileSync(file, "utf8"), marker, content));
  // Markdown is formatted by biome like everything else (npm run lint checks it).
  spawnSync(path.join(ROOT, "node_modules/.bin/biome"), ["format", "--write", file], { cwd: ROOT, stdio: "ignore" });
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
