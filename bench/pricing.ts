/**
 * Billable units (bench/units.js counts them in each metered worker) and what they cost on
 * Cloudflare's Workers Paid plan, past the plan's monthly inclusions (a marginal price: what one
 * more million requests of a scenario add to the bill). Prices from Cloudflare's pricing pages as
 * stored in cloudflare/cloudflare-docs, read 2026-12-07 (bench/README.md, "Cost per million"):
 * - Workers Standard: $0.30 per million requests (workers/platform/pricing);
 * - Durable Objects: $0.15 per million requests (HTTP, RPC sessions, alarm invocations; incoming
 *   WebSocket messages 20:1); SQLite storage $0.001 per million rows read, $1.00 per million rows
 *   written (durable-objects/platform/pricing);
 * - D1: $0.001 per million rows read, $1.00 per million rows written (d1/platform/pricing).
 * Left out: Workers CPU time and Durable Object duration (bench/README.md says why), stored GB.
 */

/** One worker isolate's totals (bench/units.js `units`), or a sum or difference of them. */
export type Units = {
  workerRequests: number;
  doRequests: number;
  doRequestsByClass: Record<string, number>;
  doAlarms: number;
  doWebSocketMessages: number;
  d1Queries: number;
  d1Calls: number;
  /** Of d1Queries and d1Calls, those made behind the answers (alarms, Workflows, cron: owners' outboxes). */
  d1QueriesBehind: number;
  d1CallsBehind: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  doRowsRead: number;
  doRowsWritten: number;
};

/** The units one request of a scenario used, on average (what results.json keeps per row). */
export type UnitsPerRequest = {
  workerRequests: number;
  doRequests: number;
  /** Every D1 statement, on the request path or behind it. */
  d1Queries: number;
  d1Calls: number;
  /** Of d1Queries, those made behind the answers (alarms, Workflows, cron). */
  d1QueriesBehind: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  doRowsRead: number;
  doRowsWritten: number;
};

/** USD per unit. */
export const PRICES = {
  workerRequest: 0.3 / 1e6,
  doRequest: 0.15 / 1e6,
  d1RowRead: 0.001 / 1e6,
  d1RowWritten: 1 / 1e6,
  doRowRead: 0.001 / 1e6,
  doRowWritten: 1 / 1e6,
} as const;

export const zeroUnits = (): Units => ({
  workerRequests: 0,
  doRequests: 0,
  doRequestsByClass: {},
  doAlarms: 0,
  doWebSocketMessages: 0,
  d1Queries: 0,
  d1Calls: 0,
  d1QueriesBehind: 0,
  d1CallsBehind: 0,
  d1RowsRead: 0,
  d1RowsWritten: 0,
  doRowsRead: 0,
  doRowsWritten: 0,
});

/** `a + sign × b`, field by field (by class too). */
export function addUnits(a: Units, b: Units, sign = 1): Units {
  const out = zeroUnits();
  for (const key of Object.keys(out) as (keyof Units)[]) {
    if (key === "doRequestsByClass") continue;
    // A reading from an older meter may lack a field: it counted none.
    out[key] = (a[key] ?? 0) + sign * (b[key] ?? 0);
  }
  for (const name of new Set([...Object.keys(a.doRequestsByClass), ...Object.keys(b.doRequestsByClass)])) {
    const n = (a.doRequestsByClass[name] ?? 0) + sign * (b.doRequestsByClass[name] ?? 0);
    if (n !== 0) out.doRequestsByClass[name] = n;
  }
  return out;
}

/** Several isolates' totals as one. */
export const sumUnits = (all: Units[]) => all.reduce((sum, u) => addUnits(sum, u), zeroUnits());

/** Units between two readings, per request of the scenario (`requests`: the Worker requests counted in between). */
export function perRequest(delta: Units, requests: number): UnitsPerRequest {
  const n = Math.max(requests, 1);
  const per = (x: number) => Number((x / n).toFixed(3));
  return {
    workerRequests: per(delta.workerRequests),
    // Incoming WebSocket messages count as requests at their billed ratio.
    doRequests: per(delta.doRequests + delta.doWebSocketMessages / 20),
    d1Queries: per(delta.d1Queries),
    d1Calls: per(delta.d1Calls),
    d1QueriesBehind: per(delta.d1QueriesBehind),
    d1RowsRead: per(delta.d1RowsRead),
    d1RowsWritten: per(delta.d1RowsWritten),
    doRowsRead: per(delta.doRowsRead),
    doRowsWritten: per(delta.doRowsWritten),
  };
}

/** What each kind of unit costs per million requests, and the total, in USD. */
export function costPerMillion(u: UnitsPerRequest) {
  const parts = {
    workerRequests: u.workerRequests * PRICES.workerRequest * 1e6,
    doRequests: u.doRequests * PRICES.doRequest * 1e6,
    d1RowsRead: u.d1RowsRead * PRICES.d1RowRead * 1e6,
    d1RowsWritten: u.d1RowsWritten * PRICES.d1RowWritten * 1e6,
    doRowsRead: u.doRowsRead * PRICES.doRowRead * 1e6,
    doRowsWritten: u.doRowsWritten * PRICES.doRowWritten * 1e6,
  };
  const total = Object.values(parts).reduce((sum, x) => sum + x, 0);
  return { total: Number(total.toFixed(4)), parts };
}

/** A dollar figure as the tables print it. */
export const dollars = (x: number) => `$${x < 10 ? x.toFixed(3) : x.toFixed(2)}`;
