/** One scenario's figures in bench/results.json (other tools read this shape). */
export type Row = {
  name: string;
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** rps over the bare Worker's rps, measured just before this scenario. */
  ratioToBare: number;
  bareRps: number;
};

/**
 * The floor under each D1 path: the probe (bench/bare-d1-worker.js) of a bare Worker making the one
 * D1 round trip that path cannot avoid, a read by id or a message append with its seq. A route
 * doing more than its probe cannot beat the probe's ratio on the same machine.
 */
const FLOOR_OF: Record<string, string> = {
  "users-me": "bare-d1-read",
  "chat-list": "bare-d1-read",
  "message-list-1k": "bare-d1-read",
  "message-list-100k": "bare-d1-read",
  "message-send": "bare-d1-append",
  "message-send-100-chats": "bare-d1-append",
  "transfer-hot-sender": "bare-d1-append",
  "transfer-random-pairs": "bare-d1-append",
};

/** The goals of issue 12 against this run: reported, not asserted (only the books fail the run). */
export function renderGoals(rows: Row[], problems: string[]) {
  const row = (name: string) => rows.find((r) => r.name === name);
  const factor = (goal: number, got: number) => (got >= goal ? "met" : `missed by ${(goal / Math.max(got, 1e-9)).toFixed(2)}×`);
  const ratioGoal = (name: string, goal: number, p99Goal?: number) => {
    const r = row(name);
    if (!r) return [];
    const floorName = FLOOR_OF[name];
    const floor = floorName === undefined ? undefined : row(floorName);
    const verdicts = [factor(goal, r.ratioToBare)];
    if (floor && r.ratioToBare < goal && floor.ratioToBare < goal) verdicts.push(`the goal is above the floor`);
    if (p99Goal) verdicts.push(r.p99Ms <= p99Goal ? "tail met" : `tail missed by ${(r.p99Ms / p99Goal).toFixed(1)}×`);
    const floorCell = floor ? `${floor.ratioToBare}× (${floor.name})` : "—";
    return [
      `| ${name} ≥ ${goal}× bare${p99Goal ? `, p99 ≤ ${p99Goal} ms` : ""} | ${r.ratioToBare}×${p99Goal ? `, p99 ${r.p99Ms} ms` : ""} | ${floorCell} | ${verdicts.join("; ")} |`,
    ];
  };
  const sizeGoal = (big: string, small: string) => {
    const b = row(big);
    const a = row(small);
    if (!a || !b) return [];
    return [
      `| ${big} ≥ 0.9× ${small} (req/s) | ${b.rps.toFixed(0)} vs ${a.rps.toFixed(0)} (${(b.rps / a.rps).toFixed(2)}×) | — | ${factor(0.9, b.rps / a.rps)} |`,
    ];
  };
  const errors = rows.reduce((sum, r) => sum + r.errors, 0);
  return [
    "Against the goals of issue 12 (computed by the run; the floor is a bare Worker making the one D1 round trip the path cannot avoid, measured in the same run: bench/bare-d1-worker.js):",
    "",
    "| goal | measured | floor | verdict |",
    "|---|---|---|---|",
    ...ratioGoal("transfer-hot-sender", 0.065, 300),
    ...ratioGoal("transfer-random-pairs", 0.06, 400),
    ...ratioGoal("message-send", 0.15),
    ...ratioGoal("message-send-100-chats", 0.15),
    ...ratioGoal("chat-list", 0.15),
    ...ratioGoal("health", 0.8),
    ...ratioGoal("users-me", 0.3),
    ...ratioGoal("message-list-1k", 0.15),
    ...ratioGoal("message-list-100k", 0.15),
    ...ratioGoal("ledger-page-1k", 0.15),
    ...ratioGoal("ledger-page-100k", 0.15),
    ...sizeGoal("message-list-100k", "message-list-1k"),
    ...sizeGoal("ledger-page-100k", "ledger-page-1k"),
    `| 0 errors in every scenario | ${errors} | — | ${errors ? "missed" : "met"} |`,
    `| books: reconciliation clean, seq contiguous, 0 negative | ${problems.length} violations | — | ${problems.length ? "missed" : "met"} |`,
  ].join("\n");
}
