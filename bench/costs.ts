import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { FLOOR_OF, type Row } from "./goals.ts";
import { costPerMillion, dollars, perRequest, type Units } from "./pricing.ts";

const ROOT = path.resolve(import.meta.dirname, "..");

/**
 * What a scenario's counted units (bench/units.js, bench/world.ts `countUnits`) put in its
 * results.json row: the units per request (the scenario's own Worker requests, counted, are the
 * denominator), the object requests by class, the D1 statements per request and the price of a
 * million such requests (bench/pricing.ts).
 */
export function unitFields(
  units: Units,
): Pick<Row, "unitRequests" | "units" | "doRequestsByClass" | "d1QueriesPerRequest" | "costPerMillion"> {
  const requests = units.workerRequests;
  const per = perRequest(units, requests);
  return {
    unitRequests: requests,
    units: per,
    doRequestsByClass: Object.fromEntries(
      Object.entries(units.doRequestsByClass).map(([name, n]) => [name, Number((n / Math.max(requests, 1)).toFixed(3))]),
    ),
    // The goals' figure: statements on the request path (the outboxes' flushes behind it are in `units`).
    d1QueriesPerRequest: Number(((units.d1Queries - units.d1QueriesBehind) / Math.max(requests, 1)).toFixed(3)),
    costPerMillion: costPerMillion(per).total,
  };
}

/**
 * The meter's D1 totals without the counting triggers' own work (bench/world.ts
 * `countD1RowsWritten`, on `message-send-group-100`): each row a trigger counts is one more row
 * D1 reports written and one read (its counter's UPDATE by primary key), which no request made.
 */
export function withoutTriggerRows(units: Units, triggerRows: number): Units {
  return {
    ...units,
    d1RowsWritten: Math.max(units.d1RowsWritten - triggerRows, 0),
    d1RowsRead: Math.max(units.d1RowsRead - triggerRows, 0),
  };
}

/** The figures of a run kept to compare against (bench/cost-before.json): the commit before issue 27. */
export type CostBaseline = {
  commit: string;
  at: string;
  note: string;
  scenarios: Record<string, Pick<Row, "units" | "d1QueriesPerRequest" | "costPerMillion" | "unitRequests">>;
};

export function readBaseline(root = ROOT): CostBaseline | undefined {
  try {
    return JSON.parse(readFileSync(path.join(root, "bench/cost-before.json"), "utf8")) as CostBaseline;
  } catch {
    return undefined;
  }
}

const fixed = (x: number | undefined) => (x === undefined ? "—" : String(Number(x.toFixed(2))));

/**
 * The cost table of bench/README.md: per scenario, its units per request, its dollars per million
 * requests, its floor's, the multiple, and the same scenario's figure in `before`.
 */
export function renderCosts(rows: Row[], before: CostBaseline | undefined) {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const lines = [
    `Billable units per request, counted in the Workers by bench/units.js (D1 queries: statements on the request path, then behind the answers in alarms, Workflows and cron, with all round trips in brackets), and USD per million requests at Workers Paid prices past the plan's inclusions (bench/pricing.ts; Worker CPU time and object duration left out)${before ? `; "before" is commit ${before.commit} measured ${before.at}` : ""}:`,
    "",
    `| scenario | Worker req | DO req | D1 queries: path + behind (calls) | D1 rows read | D1 rows written | DO rows read | DO rows written | $ per million | floor | floor $ per million | × floor |${before ? " before $ per million |" : ""}`,
    `|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|${before ? "--:|" : ""}`,
  ];
  for (const r of rows) {
    if (!r.units || r.costPerMillion === undefined) continue;
    const u = r.units;
    const floorName = FLOOR_OF[r.name];
    const floor = floorName ? byName.get(floorName) : undefined;
    const multiple = floor?.costPerMillion ? (r.costPerMillion / floor.costPerMillion).toFixed(2) : "—";
    const was = before?.scenarios[r.name]?.costPerMillion;
    lines.push(
      `| ${r.name} | ${fixed(u.workerRequests)} | ${fixed(u.doRequests)} | ${fixed(r.d1QueriesPerRequest)} + ${fixed(u.d1QueriesBehind ?? 0)} (${fixed(u.d1Calls)}) | ${fixed(u.d1RowsRead)} | ${fixed(u.d1RowsWritten)} | ${fixed(u.doRowsRead)} | ${fixed(u.doRowsWritten)} | ${dollars(r.costPerMillion)} | ${floorName ?? "—"} | ${floor?.costPerMillion === undefined ? "—" : dollars(floor.costPerMillion)} | ${multiple} |${before ? ` ${was === undefined ? "—" : dollars(was)} |` : ""}`,
    );
  }
  return lines.join("\n");
}

/**
 * Writes `rows`' units and costs as bench/cost-before.json, the "before" of later runs' tables; a
 * partial run of the same commit replaces only its own scenarios, and says when it ran.
 */
export function writeBaseline(rows: Row[], commit: string, at: string, root = ROOT) {
  const measured = rows.filter((r) => r.units);
  const previous = readBaseline(root);
  const same = previous?.commit === commit ? previous : undefined;
  const baseline: CostBaseline = {
    commit,
    at: same ? `${same.at}; ${measured.map((r) => r.name).join(", ")} again at ${at}` : at,
    note: same?.note ?? "npm run bench with BENCH_BASELINE set: units counted by bench/units.js on this commit's product code",
    scenarios: {
      ...same?.scenarios,
      ...Object.fromEntries(
        measured.map((r) => [
          r.name,
          {
            unitRequests: r.unitRequests,
            units: r.units,
            d1QueriesPerRequest: r.d1QueriesPerRequest,
            costPerMillion: r.costPerMillion,
          },
        ]),
      ),
    },
  };
  writeFileSync(path.join(root, "bench/cost-before.json"), `${JSON.stringify(baseline, null, 2)}\n`);
}
