import { and, asc, eq, gt, sql } from "drizzle-orm";
import { inChunks, rowsPerStatement } from "../../db/bound-parameters";
import { createDb, type Database } from "../../db/client";
import { reconciliationDiscrepancies, reconciliationRuns, users } from "../../db/schema";
import type { BooksHorizon, TransferSides, WalletBooks } from "../../durable-objects/wallet/wallet-books";
import { walletStub } from "../../durable-objects/wallet/wallet-stub";
import { log } from "../../lib/log";
import { directKeyOf } from "../membership";
import { Budget, mapLimited } from "./budget";
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
  type Sums,
  type Suspect,
  sameAggregate,
  settledBefore,
  sumBooks,
  type TransferMessage,
} from "./checks";
import { type ChatCursor, type Direction, drillMessages, drillTransfers, FIRST_CHAT } from "./drill";
import {
  CHATS_PER_PAGE,
  d1MessageTotals,
  type MessageTotalsStore,
  memoryMessageTotals,
  tidyEarlierRuns,
  walkChatPage,
} from "./message-totals";
import { directChatsOf, messagesOfTransfers } from "./transfer-messages";

/**
 * One reconciliation run, written against a `step` function so the same code runs as a Cloudflare
 * Workflow (workflow.ts: every step persisted and retried by the engine, a restarted instance
 * resumes after its last finished step) and in-process for tests (`reconcile`).
 *
 * Steps: `tidy N` deletes earlier runs' message totals; `chats N` walks a page of the chats that
 * carry transfers and adds their transfer messages up per user (message-totals.ts); `page N` reads
 * a page of users, their wallets' O(1) books and their message totals; `drill out|in <user> N` (and
 * `… chats N`) pairs one suspicious wallet's transfers with their messages (drill.ts); `recheck N`
 * re-reads each suspicious transfer (sender, then recipient, then its message) and stores what is
 * still wrong; when the totals at the cut look wrong, `recount cut` and `recount N` add them up
 * again at a later cut (`recheckTotals`); `finish` stores the verdict and closes the run. Messages
 * and wallets are compared below the run's settled bound (transfers made before the cut's second
 * ended), so the walk and the pages see the same transfers however long the run takes. Every step
 * does at most ~CHATS_PER_PAGE + 4 subrequests and returns a small result.
 */

export const WALLETS_PER_PAGE = 200;
/** Suspicious transfers re-read per step: up to 3 wallet calls and 2 chat calls each + 3 D1 calls. */
export const RECHECK_BATCH = 50;
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
  /** Chats per walk step (default CHATS_PER_PAGE; smaller only to exercise many pages). */
  chatsPerPage?: number;
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

/** Whether the run persists its progress and findings in D1 (the Workflow) or only returns them (tests). */
type Mode = { persist: boolean };

/** What every phase of a run shares: its params, where its message totals are, its step function and counters. */
type Run = {
  env: Env;
  params: RunParams;
  mode: Mode;
  store: MessageTotalsStore;
  /** The settled bound (`settledBefore`): only transfers with ids below it are compared with messages. */
  before: string;
  step: StepFn;
  track: <T extends { subrequests: number }>(result: T) => T;
};

export async function runReconciliation(
  env: Env,
  params: RunParams,
  step: StepFn,
  mode: Mode = { persist: true },
): Promise<RunReport> {
  let steps = 0;
  let maxStep = 0;
  const track = <T extends { subrequests: number }>(result: T) => {
    steps += 1;
    maxStep = Math.max(maxStep, result.subrequests);
    return result;
  };
  const store = mode.persist ? d1MessageTotals(env, params.runId) : memoryMessageTotals();
  const run: Run = { env, params, mode, store, before: settledBefore(params.cutoffAt), step, track };
  if (mode.persist) await tidyEarlier(run);
  await walkChats(run);
  const { sums, confirmed } = await walkWallets(run);
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

/** `tidy N`: earlier runs' message totals go, a bounded batch a step. */
async function tidyEarlier(run: Run): Promise<void> {
  for (let n = 1; ; n += 1) {
    const tidy = run.track(await run.step(`tidy ${n}`, () => tidyEarlierRuns(run.env, run.params.runId)));
    if (!tidy.more) return;
  }
}

/** `chats N`: every chat that carries transfers, a page a step, its messages added up per user. */
async function walkChats(run: Run): Promise<void> {
  let after = "";
  for (let n = 1; ; n += 1) {
    const from = after;
    const limit = run.params.chatsPerPage ?? CHATS_PER_PAGE;
    const page = run.track(await run.step(`chats ${n}`, () => walkChatPage(run.env, run.store, n, from, run.before, limit)));
    if (page.nextAfter === null) return;
    after = page.nextAfter;
  }
}

/** `page N` over every user, each page's suspicious wallets drilled and its suspects re-read before the next page. */
async function walkWallets(run: Run): Promise<{ sums: Sums; confirmed: Finding[] }> {
  let sums = emptySums();
  let afterUserId = "";
  let recheckNo = 0;
  const confirmed: Finding[] = [];
  for (let pageNo = 1; ; pageNo += 1) {
    const [from, sumsBefore] = [afterUserId, sums];
    const page = run.track(await run.step(`page ${pageNo}`, () => readPage(run, from, sumsBefore, pageNo)));
    sums = addSums(sums, page.sums);
    const suspects: Suspect[] = [...page.stuck];
    for (const userId of page.drillOut) suspects.push(...(await drillWallet(run, "out", userId)));
    for (const userId of page.drillIn) suspects.push(...(await drillWallet(run, "in", userId)));
    const unique = dedupeSuspects(suspects);
    for (let i = 0; i < unique.length || (i === 0 && page.ledgerSuspects.length > 0); i += RECHECK_BATCH) {
      recheckNo += 1;
      const batch = unique.slice(i, i + RECHECK_BATCH);
      const ledger = i === 0 ? page.ledgerSuspects : [];
      const result = run.track(await run.step(`recheck ${recheckNo}`, () => recheck(run, batch, ledger)));
      confirmed.push(...result.findings);
    }
    if (page.nextAfter === null) return { sums, confirmed };
    afterUserId = page.nextAfter;
  }
}

/**
 * One wallet's drill (drill.ts): its transfers against their messages; then, only if the walk
 * counted messages of it that the first pass did not see, its chats' messages against the wallet.
 */
async function drillWallet(run: Run, direction: Direction, userId: string): Promise<Suspect[]> {
  const { env, store, before } = run;
  const suspects: Suspect[] = [];
  let seen: MessageAggregate = { count: 0, amount: 0 };
  let counted: MessageAggregate | null = null;
  let after = "";
  for (let n = 1; counted === null; n += 1) {
    const from = after;
    const name = `drill ${direction} ${userId} ${n}`;
    const drill = run.track(await run.step(name, () => drillTransfers(env, store, direction, userId, from, before)));
    suspects.push(...drill.suspects);
    seen = { count: seen.count + drill.seen.count, amount: seen.amount + drill.seen.amount };
    counted = drill.counted;
    after = drill.nextAfter ?? "";
  }
  if (sameAggregate(seen, counted)) return suspects;
  let cursor: ChatCursor | null = FIRST_CHAT;
  for (let n = 1; cursor !== null; n += 1) {
    const from: ChatCursor = cursor;
    const name = `drill ${direction} ${userId} chats ${n}`;
    const drill = run.track(await run.step(name, () => drillMessages(env, direction, userId, from, before)));
    suspects.push(...drill.suspects);
    cursor = drill.next;
  }
  return suspects;
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

async function readPage(run: Run, afterUserId: string, before: Sums, pageNo: number): Promise<PageResult> {
  const { env, params } = run;
  const budget = new Budget();
  const { ids, books, nextAfter } = await readBooksPage(env, params, afterUserId, budget);
  // The walk counted the messages below the settled bound, as the books' `settled` counts the transfers.
  const totals = await budget.spend(run.store.read(ids));
  const none = { count: 0, amount: 0 };
  const bySender = new Map(ids.map((id) => [id, totals.get(id)?.sent ?? none]));
  const byRecipient = new Map(ids.map((id) => [id, totals.get(id)?.received ?? none]));
  const verdict = checkPage(books, bySender, byRecipient);
  if (run.mode.persist) {
    await budget.spend(
      createDb(env.DB)
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
  return {
    cutoffAt: params.cutoffAt,
    stuckBefore: params.cutoffAt,
    inFlightHorizonMs: params.inFlightHorizonMs,
    settledBefore: settledBefore(params.cutoffAt),
  };
}

type RecheckResult = { findings: Finding[]; subrequests: number };

/**
 * The re-read: each suspicious transfer is read again from its sender, its recipient and its
 * message, and each suspicious wallet's books again; only what is still wrong is a finding.
 * Findings are stored keyed by (run, kind, transfer or wallet), so a retried step or a transfer
 * suspected from both of its wallets is reported once.
 */
async function recheck(run: Run, suspects: Suspect[], ledgerUserIds: string[]): Promise<RecheckResult> {
  const { env, params } = run;
  const budget = new Budget();
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
  // The messages last: in the pair's direct chat, where a transfer's message is, or where the suspect's was seen.
  const message = await suspectMessages(env, budget, readings);
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
        message: message(suspect, reading.recipientId),
        stuckBefore: params.cutoffAt,
      }),
    );
  }
  const unique = dedupeFindings(findings);
  if (run.mode.persist && unique.length > 0) await budget.spend(storeFindings(createDb(env.DB), params.runId, unique));
  return { findings: unique, subrequests: budget.used };
}

/**
 * Each suspect's message: in the direct chat of its sender and recipient (as the re-read names
 * them) or, failing that, in the chat it was seen in. One call per chat (the pairs' chat ids are derived).
 */
async function suspectMessages(
  env: Env,
  budget: Budget,
  readings: readonly { suspect: Suspect; recipientId: string | null }[],
): Promise<(suspect: Suspect, recipientId: string | null) => TransferMessage | null> {
  const pairOf = (s: Suspect, recipientId: string | null): [string, string] | null =>
    s.senderId !== null && recipientId !== null ? [s.senderId, recipientId] : null;
  const pairs = readings.flatMap((r) => {
    const pair = pairOf(r.suspect, r.recipientId);
    return pair ? [pair] : [];
  });
  const chats = await directChatsOf(pairs);
  const chatsOf = (s: Suspect, recipientId: string | null) => {
    const pair = pairOf(s, recipientId);
    const direct = pair ? chats.get(directKeyOf(...pair)) : undefined;
    return [direct, s.chatId ?? undefined].filter((id): id is string => id !== undefined);
  };
  const wanted = new Map<string, string[]>();
  for (const { suspect, recipientId } of readings) {
    for (const chatId of chatsOf(suspect, recipientId)) wanted.set(chatId, [...(wanted.get(chatId) ?? []), suspect.transferId]);
  }
  const found = wanted.size === 0 ? [] : await messagesOfTransfers(env, budget, wanted);
  const byChatAndTransfer = new Map(found.map((m) => [`${m.chatId}:${m.transferId}`, m]));
  return (suspect, recipientId) =>
    chatsOf(suspect, recipientId)
      .map((chatId) => byChatAndTransfer.get(`${chatId}:${suspect.transferId}`))
      .find((m) => m !== undefined) ?? null;
}

async function storeFindings(db: Database, runId: string, findings: Finding[]): Promise<void> {
  const now = Date.now();
  // 7 columns per row, in chunks under D1's bound parameters, in one batch.
  const [first, ...rest] = inChunks(findings, rowsPerStatement(7)).map((chunk) =>
    db
      .insert(reconciliationDiscrepancies)
      .values(chunk.map((f) => ({ runId, key: findingKey(f), ...f, createdAt: now })))
      .onConflictDoNothing(),
  );
  await db.batch([first!, ...rest]);
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

function dedupeSuspects(suspects: Suspect[]): Suspect[] {
  const seen = new Map<string, Suspect>();
  for (const s of suspects) {
    const known = seen.get(s.transferId);
    seen.set(
      s.transferId,
      known
        ? {
            ...known,
            senderId: known.senderId ?? s.senderId,
            recipientId: known.recipientId ?? s.recipientId,
            chatId: known.chatId ?? s.chatId ?? null,
          }
        : s,
    );
  }
  return [...seen.values()];
}

function dedupeFindings(findings: Finding[]): Finding[] {
  return [...new Map(findings.map((f) => [findingKey(f), f])).values()];
}
