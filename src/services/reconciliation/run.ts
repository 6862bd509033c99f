import { and, asc, eq, gt, sql } from "drizzle-orm";
import { createDb, type Database } from "../../db/client";
import { reconciliationDiscrepancies, reconciliationRuns, users } from "../../db/schema";
import type {
  BooksHorizon,
  IncomingRow,
  OutgoingRow,
  TransferSides,
  WalletBooks,
} from "../../durable-objects/wallet/wallet-books";
import { walletStub } from "../../durable-objects/wallet/wallet-stub";
import { log } from "../../lib/log";
import {
  addSums,
  checkPage,
  checkTotals,
  classifyTransfer,
  emptySums,
  type Finding,
  findingKey,
  inFlightAt,
  ledgerFindings,
  type MessageAggregate,
  pairIncoming,
  pairOutgoing,
  type Sums,
  type Suspect,
  sumBooks,
  type TransferMessage,
} from "./checks";
import { transferMessageAggregates, transferMessagesById, transferMessagesInRange } from "./transfer-messages";

/**
 * One reconciliation run, written against a `step` function so the same code runs as a Cloudflare
 * Workflow (workflow.ts: every step persisted and retried by the engine, a restarted instance
 * resumes after its last finished step) and in-process for tests (`reconcile`).
 *
 * Steps: `page N` reads a page of users, their wallets' O(1) books and the page's message
 * aggregates; `drill out|in <user> N` pairs one suspicious wallet's transfers with its messages, a
 * page at a time; `recheck N` re-reads each suspicious transfer (sender, then recipient, then its
 * message) and stores what is still wrong; when the totals at the cut look wrong, `recount cut` and
 * `recount N` add them up again at a later cut (`recheckTotals`); `finish` stores the verdict and
 * closes the run. Every step does at most ~WALLETS_PER_PAGE + 5 subrequests and returns a small result.
 */

export const WALLETS_PER_PAGE = 200;
/** Transfers per drill step (one wallet call + one D1 query). */
export const DRILL_PAGE = 500;
/** Suspicious transfers re-read per step: up to 3 wallet calls each + 1 D1 query. */
export const RECHECK_BATCH = 90;
/** Wallet calls in flight at once within a step. */
const CONCURRENCY = 25;
/** Confirmed discrepancies logged one by one per run (the rest are counted in one line). */
const LOGGED_FINDINGS = 200;

export type RunParams = {
  runId: string;
  /**
   * The run's reference time: the books are added up as of it, and a pending transfer whose own
   * void deadline is before it is stuck (each deadline was fixed at its debit, so a later change of
   * TRANSFER_VOID_AFTER_SECONDS does not move it).
   */
  cutoffAt: number;
  /** How far before the cut a debit can still be in flight (the void deadline plus slack). */
  inFlightHorizonMs: number;
  /** Wallets per page step (default WALLETS_PER_PAGE; smaller only to exercise many pages). */
  walletsPerPage?: number;
};

export type StepFn = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

export type RunReport = {
  runId: string;
  sums: Sums;
  inFlightAmount: number;
  discrepancyCount: number;
  findings: Finding[];
  steps: number;
  maxStepSubrequests: number;
};

/** Counts a step's subrequests (a D1 query or batch, an object call: one each) against the per-invocation cap. */
class Budget {
  used = 0;
  spend<T>(promise: Promise<T>): Promise<T> {
    this.used += 1;
    return promise;
  }
}

/** Whether the run persists its progress and findings in D1 (the Workflow) or only returns them (tests). */
type Mode = { persist: boolean };

export async function runReconciliation(
  env: Env,
  params: RunParams,
  step: StepFn,
  mode: Mode = { persist: true },
): Promise<RunReport> {
  let sums = emptySums();
  let afterUserId = "";
  let pageNo = 0;
  let steps = 0;
  let maxStep = 0;
  let recheckNo = 0;
  const confirmed: Finding[] = [];
  const track = <T extends { subrequests: number }>(result: T) => {
    steps += 1;
    maxStep = Math.max(maxStep, result.subrequests);
    return result;
  };
  for (;;) {
    pageNo += 1;
    const before = sums;
    const page = track(await step(`page ${pageNo}`, () => readPage(env, params, afterUserId, before, pageNo, mode)));
    sums = addSums(sums, page.sums);
    const suspects: Suspect[] = [...page.stuck];
    for (const [direction, ids] of [
      ["out", page.drillOut],
      ["in", page.drillIn],
    ] as const) {
      for (const userId of ids) {
        let after = "";
        for (let n = 1; ; n += 1) {
          const from = after;
          const drill = track(await step(`drill ${direction} ${userId} ${n}`, () => drillWallet(env, direction, userId, from)));
          suspects.push(...drill.suspects);
          if (drill.nextAfter === null) break;
          after = drill.nextAfter;
        }
      }
    }
    const unique = dedupeSuspects(suspects);
    for (let i = 0; i < unique.length || (i === 0 && page.ledgerSuspects.length > 0); i += RECHECK_BATCH) {
      recheckNo += 1;
      const batch = unique.slice(i, i + RECHECK_BATCH);
      const ledger = i === 0 ? page.ledgerSuspects : [];
      const result = track(await step(`recheck ${recheckNo}`, () => recheck(env, params, batch, ledger, mode)));
      confirmed.push(...result.findings);
    }
    if (page.nextAfter === null) break;
    afterUserId = page.nextAfter;
  }
  const totals = checkTotals(sums) === null ? null : await recheckTotals(env, params, step, track);
  const finish = track(await step("finish", () => finishRun(env, params, sums, totals, mode)));
  const findings = dedupeFindings([...confirmed, ...(finish.totals ? [finish.totals] : [])]);
  return {
    runId: params.runId,
    sums,
    inFlightAmount: inFlightAt(sums),
    discrepancyCount: mode.persist ? finish.discrepancyCount : findings.length,
    findings,
    steps,
    maxStepSubrequests: maxStep,
  };
}

// ------------------------------------------------------------------ steps

type PageResult = {
  sums: Sums;
  nextAfter: string | null;
  ledgerSuspects: string[];
  drillOut: string[];
  drillIn: string[];
  stuck: Suspect[];
  subrequests: number;
};

async function readPage(
  env: Env,
  params: RunParams,
  afterUserId: string,
  before: Sums,
  pageNo: number,
  mode: Mode,
): Promise<PageResult> {
  const budget = new Budget();
  const db = createDb(env.DB);
  const { ids, books, nextAfter } = await readBooksPage(env, params, afterUserId, budget);
  // Read after the wallets: a transfer that posts in between shows as a difference, which the drill re-reads.
  const [bySender, byRecipient] = await budget.spend(transferMessageAggregates(env, ids));
  const verdict = checkPage(books, bySender, byRecipient);
  if (mode.persist) {
    await budget.spend(
      db
        .update(reconciliationRuns)
        .set({ walletsChecked: before.wallets + verdict.sums.wallets, pagesDone: pageNo })
        .where(eq(reconciliationRuns.id, params.runId)),
    );
  }
  return {
    sums: verdict.sums,
    nextAfter,
    ledgerSuspects: verdict.ledgerSuspects,
    drillOut: verdict.drillOut,
    drillIn: verdict.drillIn,
    stuck: verdict.stuck,
    subrequests: budget.used,
  };
}

/** A page of users (by id, after `afterUserId`) and their wallets' books. */
async function readBooksPage(env: Env, params: RunParams, afterUserId: string, budget: Budget) {
  const limit = params.walletsPerPage ?? WALLETS_PER_PAGE;
  const ids = (
    await budget.spend(
      createDb(env.DB)
        .select({ id: users.id })
        .from(users)
        .where(gt(users.id, afterUserId))
        .orderBy(asc(users.id))
        .limit(limit)
        .all(),
    )
  ).map((row) => row.id);
  const horizon = booksHorizon(params);
  const books = await mapLimited(ids, (id) => budget.spend(walletStub(env, id).books(id, horizon)) as Promise<WalletBooks>);
  return { ids, books, nextAfter: ids.length < limit ? null : ids[ids.length - 1]! };
}

/** What the run asks each wallet's books: at its cut, which is also when a pending transfer's own deadline has passed. */
function booksHorizon(params: RunParams): BooksHorizon {
  return { cutoffAt: params.cutoffAt, stuckBefore: params.cutoffAt, inFlightHorizonMs: params.inFlightHorizonMs };
}

type DrillResult = { suspects: Suspect[]; nextAfter: string | null; subrequests: number };

/**
 * One page of one wallet's transfers (by id) merged with its messages in the same id range:
 * the range ends at the page's last transfer id unless this is the last page, so a message whose
 * transfer is missing is seen exactly once, on the page whose range holds its id.
 */
async function drillWallet(env: Env, direction: "out" | "in", userId: string, afterId: string): Promise<DrillResult> {
  const budget = new Budget();
  const wallet = walletStub(env, userId);
  const messagesIn = (last: string | null) =>
    budget.spend(transferMessagesInRange(env, direction === "out" ? "sender" : "recipient", userId, afterId, last));
  const lastOf = (rows: { transferId: string }[]) => (rows.length < DRILL_PAGE ? null : rows[rows.length - 1]!.transferId);
  if (direction === "out") {
    const rows: OutgoingRow[] = await budget.spend(wallet.outgoingPage(afterId, DRILL_PAGE));
    const last = lastOf(rows);
    return { suspects: pairOutgoing(userId, rows, await messagesIn(last)), nextAfter: last, subrequests: budget.used };
  }
  const rows: IncomingRow[] = await budget.spend(wallet.incomingPage(afterId, DRILL_PAGE));
  const last = lastOf(rows);
  return { suspects: pairIncoming(userId, rows, await messagesIn(last)), nextAfter: last, subrequests: budget.used };
}

type RecheckResult = { findings: Finding[]; subrequests: number };

/**
 * The re-read: each suspicious transfer is read again from its sender, its recipient and D1, and
 * each suspicious wallet's books again; only what is still wrong is a finding. Findings are stored
 * keyed by (run, kind, transfer or wallet), so a retried step or a transfer suspected from both of
 * its wallets is reported once.
 */
async function recheck(
  env: Env,
  params: RunParams,
  suspects: Suspect[],
  ledgerUserIds: string[],
  mode: Mode,
): Promise<RecheckResult> {
  const budget = new Budget();
  const db = createDb(env.DB);
  const findings: Finding[] = [];
  const horizon = booksHorizon(params);
  const ledgerBooks = await mapLimited(
    ledgerUserIds,
    (id) => budget.spend(walletStub(env, id).books(id, horizon)) as Promise<WalletBooks>,
  );
  for (const books of ledgerBooks) findings.push(...ledgerFindings(books));

  const sides = (userId: string | null, transferId: string) =>
    userId === null
      ? Promise.resolve(null)
      : (budget.spend(walletStub(env, userId).transferSides(transferId)) as Promise<TransferSides>);
  const readings = await mapLimited(suspects, async (suspect) => {
    // The sender first: once it says posted or voided, nothing the other reads see can still change.
    const sender = await sides(suspect.senderId, suspect.transferId);
    const recipientId = sender?.out?.recipientId ?? suspect.recipientId;
    const [recipient, stray] = await Promise.all([
      sides(recipientId, suspect.transferId),
      suspect.recipientId !== null && suspect.recipientId !== recipientId ? sides(suspect.recipientId, suspect.transferId) : null,
    ]);
    return { suspect, sender, recipientId, recipient, stray };
  });
  const transferIds = suspects.map((s) => s.transferId);
  const found = transferIds.length === 0 ? [] : await budget.spend(transferMessagesById(env, transferIds));
  const messageByTransfer = new Map(found.map((m) => [m.transferId, m]));
  for (const reading of readings) {
    const { suspect } = reading;
    findings.push(
      ...classifyTransfer({
        transferId: suspect.transferId,
        senderId: suspect.senderId,
        sender: reading.sender,
        recipientId: reading.recipientId,
        recipient: reading.recipient,
        strayCredit:
          reading.stray?.credit && suspect.recipientId !== null
            ? { userId: suspect.recipientId, credit: reading.stray.credit }
            : null,
        message: messageByTransfer.get(suspect.transferId) ?? null,
        stuckBefore: params.cutoffAt,
      }),
    );
  }
  const unique = dedupeFindings(findings);
  if (mode.persist && unique.length > 0) await budget.spend(storeFindings(db, params.runId, unique));
  return { findings: unique, subrequests: budget.used };
}

async function storeFindings(db: Database, runId: string, findings: Finding[]): Promise<void> {
  const now = Date.now();
  // 7 columns per row: at most 14 rows per statement under D1's 100 bound parameters.
  const statements = [];
  for (let i = 0; i < findings.length; i += 14) {
    statements.push(
      db
        .insert(reconciliationDiscrepancies)
        .values(findings.slice(i, i + 14).map((f) => ({ runId, key: findingKey(f), ...f, createdAt: now })))
        .onConflictDoNothing(),
    );
  }
  await db.batch(statements as [(typeof statements)[number], ...typeof statements]);
}

type RecountResult = { sums: Sums; nextAfter: string | null; subrequests: number };

/**
 * The totals looked wrong at the cut. Money in flight across the cut can do that with nothing
 * wrong: a debit before the in-flight horizon whose credit came after the cut (a transfer credited
 * late, or debited under a longer void deadline than today's) is counted as sent but neither
 * received nor bounded. That is over at a later cut; credits created or lost are not. So every
 * wallet's books are added up again, page by page, at a new cut, and only what is still wrong is reported.
 */
async function recheckTotals(
  env: Env,
  params: RunParams,
  step: StepFn,
  track: <T extends { subrequests: number }>(result: T) => T,
): Promise<Finding | null> {
  // Taken in a step, so a replayed Workflow recounts at the same cut.
  const { cutoffAt } = track(await step("recount cut", async () => ({ cutoffAt: Date.now(), subrequests: 0 })));
  const later = { ...params, cutoffAt };
  let sums = emptySums();
  let afterUserId = "";
  for (let n = 1; ; n += 1) {
    const from = afterUserId;
    const page = track(await step(`recount ${n}`, () => recountPage(env, later, from)));
    sums = addSums(sums, page.sums);
    if (page.nextAfter === null) return checkTotals(sums);
    afterUserId = page.nextAfter;
  }
}

async function recountPage(env: Env, params: RunParams, afterUserId: string): Promise<RecountResult> {
  const budget = new Budget();
  const { books, nextAfter } = await readBooksPage(env, params, afterUserId, budget);
  return { sums: sumBooks(books), nextAfter, subrequests: budget.used };
}

type FinishResult = { totals: Finding | null; discrepancyCount: number; subrequests: number };

async function finishRun(env: Env, params: RunParams, sums: Sums, totals: Finding | null, mode: Mode): Promise<FinishResult> {
  const budget = new Budget();
  if (!mode.persist) return { totals, discrepancyCount: totals ? 1 : 0, subrequests: 0 };
  const db = createDb(env.DB);
  if (totals) await budget.spend(storeFindings(db, params.runId, [totals]));
  const [counted] = await budget.spend(
    db
      .select({ count: sql<number>`COUNT(*)` })
      .from(reconciliationDiscrepancies)
      .where(eq(reconciliationDiscrepancies.runId, params.runId))
      .all(),
  );
  const discrepancyCount = counted?.count ?? 0;
  await budget.spend(
    db
      .update(reconciliationRuns)
      .set({
        status: "completed",
        finishedAt: Date.now(),
        walletsChecked: sums.wallets,
        totalBalance: sums.balance,
        totalGranted: sums.granted,
        pendingTransfers: sums.pendingTransfers,
        inFlightAmount: inFlightAt(sums),
        stuckTransfers: sums.stuckTransfers,
        discrepancyCount,
      })
      .where(and(eq(reconciliationRuns.id, params.runId), eq(reconciliationRuns.status, "running"))),
  );
  // Error level and structured, so `wrangler tail` and Workers Logs surface them; the report has all of them.
  const logged = await budget.spend(
    db
      .select()
      .from(reconciliationDiscrepancies)
      .where(eq(reconciliationDiscrepancies.runId, params.runId))
      .limit(LOGGED_FINDINGS)
      .all(),
  );
  for (const f of logged) {
    log.error(f.kind === "stuck_transfer" ? "reconciliation.stuck_transfer" : "reconciliation.discrepancy", {
      runId: params.runId,
      kind: f.kind,
      userId: f.userId,
      transferId: f.transferId,
      detail: f.detail,
    });
  }
  if (discrepancyCount > logged.length) {
    log.error("reconciliation.discrepancies_truncated", { runId: params.runId, discrepancyCount, logged: logged.length });
  }
  return { totals, discrepancyCount, subrequests: budget.used };
}

// ------------------------------------------------------------------ helpers

async function mapLimited<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      out[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  return out;
}

function dedupeSuspects(suspects: Suspect[]): Suspect[] {
  const seen = new Map<string, Suspect>();
  for (const s of suspects) {
    const known = seen.get(s.transferId);
    seen.set(
      s.transferId,
      known ? { ...known, senderId: known.senderId ?? s.senderId, recipientId: known.recipientId ?? s.recipientId } : s,
    );
  }
  return [...seen.values()];
}

function dedupeFindings(findings: Finding[]): Finding[] {
  return [...new Map(findings.map((f) => [findingKey(f), f])).values()];
}
