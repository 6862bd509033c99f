import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { BENCH_VARS } from "../bench/world.ts";
import { migratedPersistDir, serveOn } from "../test/e2e/support/server.ts";

/**
 * `npm run crash-storm -- [--seed=N] [--kill-after-ms=N] [--crashes=N] [--users=N] [--hot=N] [--pairs=N] [--keep] [--tamper]`
 *
 * Money survives a power cut: `wrangler dev` (127.0.0.1 only) over a fresh persist directory,
 * users registered through the API and funded by keyed admin grants (SIGNUP_CREDITS 0, so the books
 * are exact), then a storm of keyed credit transfers (one hot sender at high concurrency, so its
 * wallet commits in groups, plus random pairs, overdrafts and immediate duplicates), SIGKILL of the
 * whole server process group mid-storm, a restart on the same directory, and every recorded request
 * retried with its key and body until it has a final answer. Then the invariants: one outcome per
 * key (byte-identical `data`/`code`, one original answer, later ones marked as replays), every 201 posted, a clean reconciliation with
 * balances == grants, each balance == grants + received − sent (from the 201s), and in D1 every
 * chat's seq 1..lastSeq and exactly one credit_transfer message per posted transfer.
 * Exits 1 with the violations listed; the persist directory (with the server logs) is removed unless
 * `--keep` or a violation. Bounded: the storm by the kill time, the retries by RETRY_BUDGET_MS, the
 * reconciliation by 60 s. README.md "Crash storm" says what each flag does.
 */
const ROOT = path.resolve(import.meta.dirname, "..");

const flags = Object.fromEntries(
  process.argv
    .slice(2)
    .filter((arg) => arg.startsWith("--"))
    .map((arg) => {
      const [name, value] = arg.slice(2).split("=");
      return [name, value ?? "true"];
    }),
);
const numberFlag = (name: string, fallback: number) => (flags[name] === undefined ? fallback : Number(flags[name]));

const SEED = numberFlag("seed", Date.now() % 1_000_000);
// A small deterministic PRNG (mulberry32): the seed replays the same choices (timing still varies).
let prngState = SEED >>> 0;
function random(): number {
  prngState = (prngState + 0x6d2b79f5) >>> 0;
  let t = prngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randomInt = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

const KILL_AFTER_MS = numberFlag("kill-after-ms", randomInt(300, 15_000));
/** Kill and restart this many times; each storm after a restart also re-sends keys that have no final answer yet. */
const CRASHES = Math.max(1, numberFlag("crashes", 1));
const LATER_KILLS_MS = Array.from({ length: CRASHES - 1 }, () => randomInt(300, 6_000));
const USERS = numberFlag("users", 24);
const HOT_CONCURRENCY = numberFlag("hot", 32);
const PAIR_CONCURRENCY = numberFlag("pairs", 16);
const KEEP = flags.keep === "true";
/** The checker's own check: one wallet gets a credit from nowhere while the server is down; the run must then fail. */
const TAMPER = flags.tamper === "true";
const HOT_GRANT = 3_000;
const USER_GRANT = 500;
/** MAX_TRANSFER_AMOUNT's default: more than all the money there is, so always an overdraft. */
const OVERDRAFT = 100_000;
const RETRY_BUDGET_MS = 90_000;
/** When a pending transfer's recovery alarm is due, read from the source (the Node typecheck cannot import src/). */
const IN_FLIGHT_MS = Number(
  readFileSync(path.join(ROOT, "src/durable-objects/wallet/wallet-types.ts"), "utf8")
    .match(/export const IN_FLIGHT_MS = ([\d_]+);/)?.[1]
    ?.replaceAll("_", "") ?? Number.NaN,
);
if (!Number.isFinite(IN_FLIGHT_MS)) throw new Error("IN_FLIGHT_MS not found in src/durable-objects/wallet/wallet-types.ts");

/** The benchmark's raised limits (so the limiter refuses nothing), SIGNUP_CREDITS 0 and its admin email. */
const VARS = BENCH_VARS;

type User = { id: string; token: string; granted: number };
type Body = { recipientId: string; amount: number; note?: string };
type Phase = "storm" | "retry" | "confirm";
/** `sentAt`/`receivedAt` order answers: one sent after a final answer arrived must be a replay. */
type Answer = { phase: Phase; status: number; text: string; replayed: boolean; sentAt: number; receivedAt: number };
type Keyed = {
  key: string;
  sender: number;
  recipient: number;
  body: Body;
  answers: Answer[];
  failures: string[];
  /** When a send of it first failed without any answer (cut by a kill). */
  firstFailureAt?: number;
};
type Envelope = { statusCode: number; data: any; code?: string; errors: string[] | null };

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const log = (line: string) => console.log(`crash-storm [${elapsed()}]: ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let base = "";

async function call(method: string, pathname: string, token: string | undefined, body?: unknown, key?: string) {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  const res = await fetch(`${base}${pathname}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, text, replayed: res.headers.get("Idempotent-Replayed") === "true" };
}

async function expectJson(
  what: string,
  result: Promise<{ status: number; text: string }>,
  statuses: number[],
): Promise<Envelope> {
  const { status, text } = await result;
  if (!statuses.includes(status)) throw new Error(`${what}: ${status} ${text.slice(0, 400)}`);
  return JSON.parse(text) as Envelope;
}

async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

async function register(label: string, email = `${label}@crash.example.com`): Promise<User> {
  const json = await expectJson(
    `register ${label}`,
    call("POST", "/api/v1/auth/register", undefined, {
      email,
      password: "crash-storm-password",
      displayName: label,
    }),
    [201],
  );
  return { id: json.data.user.id, token: json.data.accessToken, granted: 0 };
}

async function grant(admin: User, user: User, amount: number, key: string) {
  await expectJson(
    "grant",
    call("POST", `/api/v1/admin/wallets/${user.id}/grants`, admin.token, { amount, reason: "crash-storm seed" }, key),
    [201],
  );
  user.granted += amount;
}

// ------------------------------------------------------------------ the storm

const requests: Keyed[] = [];
let keyCounter = 0;
let killed = false;
let duplicatesSent = 0;

function newRequest(users: User[], sender: number, recipient: number, amount: number): Keyed {
  const body: Body = { recipientId: (users[recipient] as User).id, amount };
  if (random() < 0.2) body.note = `storm ${keyCounter}`;
  const request: Keyed = {
    key: `crash-${SEED}-${++keyCounter}`,
    sender,
    recipient,
    body,
    answers: [],
    failures: [],
  };
  requests.push(request);
  return request;
}

async function send(users: User[], request: Keyed, phase: Phase): Promise<Answer | undefined> {
  const sentAt = performance.now();
  try {
    const { status, text, replayed } = await call(
      "POST",
      "/api/v1/messages/credit-transfer",
      (users[request.sender] as User).token,
      request.body,
      request.key,
    );
    const answer = { phase, status, text, replayed, sentAt, receivedAt: performance.now() };
    request.answers.push(answer);
    return answer;
  } catch (error) {
    request.failures.push(`${phase}: ${(error as Error).cause ?? (error as Error).message}`);
    request.firstFailureAt ??= performance.now();
    return undefined;
  }
}

async function fire(users: User[], request: Keyed) {
  // An immediate duplicate (same key, same body, sent together): both must get the one outcome.
  if (random() < 0.1) {
    duplicatesSent++;
    await Promise.all([send(users, request, "storm"), send(users, request, "storm")]);
  } else await send(users, request, "storm");
}

async function storm(users: User[], resend: boolean) {
  const otherThan = (index: number) => {
    const other = randomInt(0, users.length - 2);
    return other >= index ? other + 1 : other;
  };
  const hot = Array.from({ length: HOT_CONCURRENCY }, async () => {
    while (!killed) {
      const amount = random() < 0.05 ? OVERDRAFT : randomInt(1, 20);
      await fire(users, newRequest(users, 0, otherThan(0), amount));
    }
  });
  const pairs = Array.from({ length: PAIR_CONCURRENCY }, async () => {
    while (!killed) {
      const sender = randomInt(0, users.length - 1);
      const roll = random();
      // Amounts near a small wallet's balance run it dry mid-storm, so refusals interleave with debits.
      const amount = roll < 0.05 ? OVERDRAFT : roll < 0.2 ? randomInt(200, 600) : randomInt(1, 60);
      await fire(users, newRequest(users, sender, otherThan(sender), amount));
    }
  });
  // After a restart, keys left without a final answer are re-sent while the new storm runs.
  const unresolved = resend ? requests.filter((r) => !r.answers.some((a) => isFinal(a.status))) : [];
  const resenders = Array.from({ length: resend ? 4 : 0 }, async () => {
    while (!killed && unresolved.length) await send(users, unresolved.shift() as Keyed, "storm");
  });
  await Promise.all([...hot, ...pairs, ...resenders]);
}

// ------------------------------------------------------------------ after the restart

const isFinal = (status: number) => status === 201 || (status >= 400 && status < 500 && status !== 429);

/** Until each key has a final answer after the restart (5xx and connection errors retried with backoff). */
async function retryAll(users: User[]) {
  const deadline = Date.now() + RETRY_BUDGET_MS;
  let retriedAfterFailure = 0;
  await inParallel(requests, 24, async (request) => {
    let backoff = 100;
    let attempts = 0;
    while (Date.now() < deadline) {
      attempts++;
      const answer = await send(users, request, "retry");
      if (answer && isFinal(answer.status)) break;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2_000);
    }
    if (attempts > 1) retriedAfterFailure++;
  });
  return retriedAfterFailure;
}

function parse(answer: Answer): Envelope | undefined {
  try {
    return JSON.parse(answer.text) as Envelope;
  } catch {
    return undefined;
  }
}

/** The part of an answer that must be byte-identical across every answer a key gets. */
function outcomeOf(answer: Answer) {
  const json = parse(answer);
  return JSON.stringify({ status: answer.status, code: json?.code ?? null, data: json?.data ?? null });
}

type Ledger = { sent: number; received: number };

function checkOutcomes(users: User[], problems: string[]) {
  const stats = {
    created: 0,
    refused: 0,
    cutByKill: 0,
    executedAfterRestart: 0,
    lostReplies: 0,
    fivexx: 0,
    fivexxResolved: 0,
  };
  const posted: { request: Keyed; transfer: any }[] = [];
  for (const request of requests) {
    const finals = request.answers.filter((answer) => isFinal(answer.status));
    const serverErrors = request.answers.filter((answer) => answer.status >= 500);
    if (serverErrors.length) {
      stats.fivexx++;
      if (finals.length) stats.fivexxResolved++;
    }
    if (!finals.length) {
      problems.push(
        `key ${request.key}: no final answer (${request.answers.map((a) => `${a.phase} ${a.status}`).join(", ")}; ${request.failures.slice(-3).join("; ")})`,
      );
      continue;
    }
    const outcomes = new Set(finals.map(outcomeOf));
    if (outcomes.size !== 1) {
      problems.push(`key ${request.key}: ${outcomes.size} different outcomes: ${[...outcomes].join(" | ").slice(0, 1500)}`);
    }
    const first = finals[0] as Answer;
    const json = parse(first);
    if (first.status === 201) {
      stats.created++;
      const data = json?.data;
      if (
        !data ||
        data.senderId !== (users[request.sender] as User).id ||
        data.recipientId !== request.body.recipientId ||
        data.transferredAmount !== request.body.amount
      ) {
        problems.push(
          `key ${request.key}: 201 does not match its sender and body ${JSON.stringify(request.body)}: ${first.text}`,
        );
      }
      if (data) posted.push({ request, transfer: data });
    } else if (first.status === 409 && (json?.code === "insufficient_balance" || json?.code === "transfer_limit_exceeded")) {
      stats.refused++;
    } else {
      problems.push(`key ${request.key}: unexpected final answer ${first.status} ${first.text.slice(0, 300)}`);
    }
    const firstFinal = [...finals].sort((a, b) => a.receivedAt - b.receivedAt)[0] as Answer;
    if (request.firstFailureAt !== undefined && firstFinal.receivedAt > request.firstFailureAt) {
      // Cut by a kill before any final answer: a first answer that is a replay means it had executed
      // before the kill and only its reply was lost.
      stats.cutByKill++;
      if (firstFinal.replayed) stats.lostReplies++;
      else stats.executedAfterRestart++;
    }
    // One execution per key: at most one final answer not marked as a replay, and every answer to a
    // request sent after a final answer had arrived is a replay.
    const firstFinalAt = Math.min(...finals.map((answer) => answer.receivedAt));
    const originals = finals.filter((answer) => !answer.replayed);
    if (originals.length > 1)
      problems.push(`key ${request.key}: ${originals.length} final answers not marked Idempotent-Replayed`);
    for (const answer of finals) {
      if (answer.sentAt > firstFinalAt && !answer.replayed) {
        problems.push(
          `key ${request.key}: ${answer.phase} answer ${answer.status} after a final answer, not marked Idempotent-Replayed`,
        );
      }
    }
  }
  return { stats, posted };
}

async function settleAndCheckPosted(users: User[], posted: { request: Keyed; transfer: any }[], problems: string[]) {
  let notPosted = 0;
  await inParallel(posted, 16, async ({ request, transfer }) => {
    const sender = users[request.sender] as User;
    for (let attempt = 0; attempt < 10; attempt++) {
      const res = await call("GET", `/api/v1/wallets/me/transfers/${transfer.transferId}`, sender.token).catch(() => undefined);
      if (res?.status === 200) {
        const data = (JSON.parse(res.text) as Envelope).data;
        if (data.status === "posted") {
          if (data.senderId !== sender.id)
            problems.push(`transfer ${transfer.transferId}: sender ${data.senderId}, expected ${sender.id}`);
          return;
        }
      }
      await sleep(500);
    }
    notPosted++;
    problems.push(`transfer ${transfer.transferId} (key ${request.key}) answered 201 but is not posted`);
  });
  return notPosted;
}

/** A reconciliation run started now (one already running is waited out first), once it has ended. */
async function freshRun(admin: User): Promise<any> {
  const deadline = Date.now() + 60_000;
  const waitFor = async (runId: string) => {
    while (Date.now() < deadline) {
      const run = (
        await expectJson("reconciliation run", call("GET", `/api/v1/admin/reconciliations/${runId}`, admin.token), [200])
      ).data;
      if (run.status !== "running") return run;
      await sleep(500);
    }
    throw new Error(`reconciliation run ${runId} still running after 60 s`);
  };
  // A run already in progress (started before everything settled) is waited out; ours starts after it.
  let run: any;
  for (;;) {
    const start = await call("POST", "/api/v1/admin/reconciliations", admin.token);
    const json = JSON.parse(start.text) as Envelope;
    if (start.status === 202) {
      run = await waitFor(json.data.id);
      break;
    }
    if (start.status !== 200) throw new Error(`start reconciliation: ${start.status} ${start.text}`);
    await waitFor(json.data.id);
  }
  return run;
}

async function reconcile(admin: User, granted: number, problems: string[]) {
  const run = await freshRun(admin);
  const summary = `run ${run.id} ${run.status}: ${run.walletsChecked} wallets, balance ${run.totalBalance}, granted ${run.totalGranted}, pending ${run.pendingTransfers}, stuck ${run.stuckTransfers}, ${run.discrepancyCount} discrepancies`;
  log(`reconciliation ${summary}`);
  if (run.status !== "completed") problems.push(`reconciliation ${summary} (error ${run.error})`);
  if (run.discrepancyCount !== 0)
    problems.push(`reconciliation discrepancies: ${JSON.stringify(run.discrepancies).slice(0, 1500)}`);
  if (run.totalBalance !== run.totalGranted) problems.push(`money not conserved: ${summary}`);
  if (run.totalGranted !== granted)
    problems.push(`reconciliation counts ${run.totalGranted} granted, the script granted ${granted}`);
  if (run.pendingTransfers !== 0 || run.stuckTransfers !== 0) problems.push(`transfers left unsettled: ${summary}`);
  const latest = await expectJson("GET reconciliation", call("GET", "/api/v1/admin/reconciliation", admin.token), [200]);
  if (latest.data.runId !== run.id)
    problems.push(`GET /admin/reconciliation answered run ${latest.data.runId}, not the latest ${run.id}`);
  if (latest.data.discrepancies.length) problems.push(`GET /admin/reconciliation lists discrepancies`);
}

async function checkBalances(users: User[], posted: { request: Keyed; transfer: any }[], problems: string[]) {
  const ledger = users.map((): Ledger => ({ sent: 0, received: 0 }));
  for (const { request } of posted) {
    (ledger[request.sender] as Ledger).sent += request.body.amount;
    (ledger[request.recipient] as Ledger).received += request.body.amount;
  }
  let total = 0;
  await inParallel(
    users.map((user, index) => ({ user, index })),
    8,
    async ({ user, index }) => {
      const res = await expectJson("GET wallet", call("GET", "/api/v1/wallets/me", user.token), [200]);
      const { sent, received } = ledger[index] as Ledger;
      const expected = user.granted + received - sent;
      total += res.data.balance;
      if (res.data.balance !== expected) {
        problems.push(
          `user ${index} (${user.id}): balance ${res.data.balance}, expected ${expected} = granted ${user.granted} + received ${received} − sent ${sent}`,
        );
      }
      if (res.data.balance < 0) problems.push(`user ${index} (${user.id}): negative balance ${res.data.balance}`);
    },
  );
  return total;
}

function d1(persistDir: string, sql: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      path.join(ROOT, "node_modules/.bin/wrangler"),
      ["d1", "execute", "DB", "--local", "--persist-to", persistDir, "--json", "--command", sql],
      {
        cwd: ROOT,
        env: { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`, CI: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.stderr.on("data", (chunk) => (err += chunk));
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`wrangler d1 execute: exit ${code}\n${out}\n${err}`));
      try {
        resolve((JSON.parse(out) as { results: Record<string, unknown>[] }[])[0]?.results ?? []);
      } catch (error) {
        reject(new Error(`wrangler d1 execute: not JSON (${error})\n${out.slice(0, 1000)}`));
      }
    });
  });
}

async function checkMessages(persistDir: string, posted: { request: Keyed; transfer: any }[], users: User[], problems: string[]) {
  const gaps = await d1(
    persistDir,
    `SELECT c.id, c.last_seq, COUNT(m.id) AS n, COALESCE(MIN(m.seq), 0) AS lo, COALESCE(MAX(m.seq), 0) AS hi, COUNT(DISTINCT m.seq) AS d
     FROM chats c LEFT JOIN messages m ON m.chat_id = c.id GROUP BY c.id
     HAVING n <> c.last_seq OR (n > 0 AND (lo <> 1 OR hi <> c.last_seq OR d <> n))`,
  );
  for (const row of gaps) problems.push(`chat seq not 1..lastSeq: ${JSON.stringify(row)}`);
  const [chats] = await d1(persistDir, "SELECT COUNT(*) AS n, COALESCE(SUM(last_seq), 0) AS messages FROM chats");
  const rows = await d1(
    persistDir,
    "SELECT transfer_id AS transferId, sender_id AS senderId, transfer_recipient_id AS recipientId, transfer_amount AS amount, chat_id AS chatId, id, COUNT(*) OVER (PARTITION BY transfer_id) AS copies FROM messages WHERE type = 'credit_transfer'",
  );
  const byTransfer = new Map(rows.map((row) => [row.transferId as string, row]));
  for (const row of rows) {
    if ((row.copies as number) !== 1) problems.push(`transfer ${row.transferId}: ${row.copies} credit_transfer messages`);
  }
  const postedIds = new Set<string>();
  for (const { request, transfer } of posted) {
    postedIds.add(transfer.transferId);
    const row = byTransfer.get(transfer.transferId);
    if (!row) {
      problems.push(`transfer ${transfer.transferId} (key ${request.key}) posted without a credit_transfer message`);
      continue;
    }
    if (
      row.senderId !== (users[request.sender] as User).id ||
      row.recipientId !== request.body.recipientId ||
      row.amount !== request.body.amount ||
      row.id !== transfer.messageId ||
      row.chatId !== transfer.chatId
    ) {
      problems.push(
        `transfer ${transfer.transferId}: message ${JSON.stringify(row)} does not match its 201 ${JSON.stringify(transfer)}`,
      );
    }
  }
  for (const row of rows) {
    if (!postedIds.has(row.transferId as string))
      problems.push(`credit_transfer message for a transfer no 201 announced: ${JSON.stringify(row)}`);
  }
  log(
    `D1: ${chats?.n} chats, ${chats?.messages} messages, ${(chats?.n as number) - gaps.length} with seq 1..lastSeq; ${rows.length} credit_transfer messages for ${posted.length} posted transfers`,
  );
}

/**
 * A group's debits share one timestamp (`commitGroup` takes `now` once), so a sender's posted
 * transfers with the same `createdAt` were debited in one group (groups take milliseconds, so two
 * groups of one wallet landing in the same millisecond is unlikely): a lower bound on grouping.
 */
function groupsSeen(posted: { request: Keyed; transfer: any }[], sender?: number) {
  const sizes = new Map<string, number>();
  for (const { request, transfer } of posted) {
    if (sender !== undefined && request.sender !== sender) continue;
    const group = `${request.sender} ${transfer.createdAt}`;
    sizes.set(group, (sizes.get(group) ?? 0) + 1);
  }
  const all = [...sizes.values()];
  const shared = all.filter((size) => size > 1);
  return {
    transfers: all.reduce((sum, size) => sum + size, 0),
    groups: all.length,
    multi: shared.length,
    inMulti: shared.reduce((sum, size) => sum + size, 0),
    max: Math.max(0, ...all),
  };
}

/** The WalletDO SQLite files the server left (read while it is down). */
function walletFiles(persistDir: string): string[] {
  const dir = path.join(persistDir, "v3/do");
  const walletDir = readdirSync(dir).find((name) => name.endsWith("WalletDO"));
  if (!walletDir) throw new Error(`no WalletDO state under ${dir}`);
  return readdirSync(path.join(dir, walletDir))
    .filter((name) => name.endsWith(".sqlite"))
    .map((name) => path.join(dir, walletDir, name));
}

/**
 * What the kill left in the senders' objects (copies read while the server is down): debits
 * committed but not yet posted (`pending`) are the transfers a crash mid-group leaves to recovery.
 */
function stateAtKill(persistDir: string) {
  let pending = 0;
  let posted = 0;
  const scratch = mkdtempSync(path.join(tmpdir(), "credit-chat-crash-read-"));
  for (const file of walletFiles(persistDir)) {
    // A copy with its WAL, opened normally, so SQLite recovers the WAL the killed server left without touching the original.
    const copy = path.join(scratch, path.basename(file));
    for (const suffix of ["", "-wal", "-shm"]) {
      if (existsSync(file + suffix)) copyFileSync(file + suffix, copy + suffix);
    }
    const sqlite = new DatabaseSync(copy);
    try {
      const rows = sqlite.prepare("SELECT state, COUNT(*) AS n FROM transfers_out GROUP BY state").all() as {
        state: string;
        n: number;
      }[];
      for (const row of rows) {
        if (row.state === "pending") pending += row.n;
        else if (row.state === "posted") posted += row.n;
      }
    } catch (error) {
      // an object that never sent has no transfers_out table yet
      if (!String(error).includes("no such table")) throw error;
    } finally {
      sqlite.close();
    }
  }
  rmSync(scratch, { recursive: true, force: true });
  return { pending, posted };
}

/** A credit from nowhere in the first wallet object file found (the server is down): the checks must catch it. */
function tamper(persistDir: string) {
  for (const file of walletFiles(persistDir)) {
    const sqlite = new DatabaseSync(file);
    try {
      const changed = sqlite.prepare("UPDATE wallet SET balance = balance + 1 WHERE id = 1").run().changes;
      if (changed) return log(`tampered: +1 credit in wallet object ${path.basename(file)}`);
    } finally {
      sqlite.close();
    }
  }
  throw new Error("no wallet object to tamper with");
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  log(
    `seed ${SEED}, ${CRASHES} kill(s) after ${[KILL_AFTER_MS, ...LATER_KILLS_MS].join(", ")} ms of storm, ${USERS} users, hot sender ×${HOT_CONCURRENCY}, random pairs ×${PAIR_CONCURRENCY}`,
  );
  const persistDir = await migratedPersistDir("credit-chat-crash-");
  let server = await serveOn(persistDir, VARS);
  let keepDir = KEEP;
  const problems: string[] = [];
  try {
    base = server.baseUrl;
    log(`server at ${base}, state in ${persistDir}`);
    const admin = await register("crash-admin", VARS.ADMIN_EMAILS);
    const users: User[] = [];
    // Registration hashes a password per user: a few at a time.
    await inParallel(
      Array.from({ length: USERS }, (_, i) => i),
      4,
      async (i) => {
        users[i] = await register(`crash-user-${i}`);
      },
    );
    await inParallel(
      users.map((user, i) => ({ user, i })),
      8,
      ({ user, i }) => grant(admin, user, i === 0 ? HOT_GRANT : USER_GRANT, `crash-grant-${SEED}-${i}`),
    );
    const granted = users.reduce((sum, user) => sum + user.granted, 0);
    log(`${users.length} users registered and funded (${granted} credits granted), storm starts`);

    let pendingAtKills = 0;
    let pendingAtLastKill = 0;
    let alarmCheck = "not exercised (the last kill left no debit pending)";
    let lastKillAt = 0;
    const killTimes = [KILL_AFTER_MS, ...LATER_KILLS_MS];
    for (const [crash, killAfter] of killTimes.entries()) {
      killed = false;
      const sentBefore = requests.length;
      const stormStarted = Date.now();
      const running = storm(users, crash > 0);
      await sleep(killAfter);
      killed = true;
      const inFlightAtKill = requests.filter((r) => !r.answers.length && !r.failures.length).length;
      await server.crash();
      writeFileSync(path.join(persistDir, `server-${crash + 1}-killed.log`), server.log());
      await running;
      const answered = requests.slice(sentBefore).filter((r) => r.answers.length).length;
      log(
        `kill ${crash + 1}/${killTimes.length}: SIGKILLed the server group after ${Date.now() - stormStarted} ms of storm: ${requests.length - sentBefore} new keys sent, ${answered} answered, ~${inFlightAtKill} in flight at the kill`,
      );
      const atKill = stateAtKill(persistDir);
      pendingAtKills += atKill.pending;
      pendingAtLastKill = atKill.pending;
      lastKillAt = Date.now();
      log(
        `left by the kill in the wallet objects: ${atKill.posted} transfers posted, ${atKill.pending} debited but not yet posted`,
      );
      if (TAMPER && crash === killTimes.length - 1) tamper(persistDir);
      server = await serveOn(persistDir, VARS);
      base = server.baseUrl;
      log(`restarted on the same state at ${base}`);
    }
    if (pendingAtLastKill > 0) {
      // Nothing asks about them until their alarm is due: only the recovery alarm, armed in the
      // killed server's storage, can have finished them.
      const quietMs = Math.max(0, IN_FLIGHT_MS + 5_000 - (Date.now() - lastKillAt));
      log(`${pendingAtLastKill} debits left pending by the last kill: no request for ${quietMs} ms, then a reconciliation run`);
      await sleep(quietMs);
      const run = await freshRun(admin);
      alarmCheck = `${pendingAtLastKill} left pending by the last kill, ${run.pendingTransfers} still pending ${((Date.now() - lastKillAt) / 1000).toFixed(0)} s after it with no transfer request about them`;
      log(`recovery alarm: ${alarmCheck}`);
      if (run.pendingTransfers !== 0) problems.push(`recovery alarm after the restart: ${alarmCheck}`);
    }
    log("retrying every key");
    const retried = await retryAll(users);
    log(`every key re-sent; ${retried} needed more than one attempt after the restart`);
    await inParallel(requests, 24, async (request) => {
      await send(users, request, "confirm");
    });
    log("every key sent once more (must be a replay)");

    const { stats, posted } = checkOutcomes(users, problems);
    const notPosted = await settleAndCheckPosted(users, posted, problems);
    await reconcile(admin, granted, problems);
    const total = await checkBalances(users, posted, problems);
    log(`balances: ${users.length} wallets hold ${total} (granted ${granted}); ${notPosted} 201s not posted`);
    await server.stop();
    await checkMessages(persistDir, posted, users, problems);

    const statuses = new Map<string, number>();
    for (const request of requests) {
      for (const answer of request.answers) {
        const name = `${answer.phase} ${answer.status}`;
        statuses.set(name, (statuses.get(name) ?? 0) + 1);
      }
    }
    const hotGroups = groupsSeen(posted, 0);
    const allGroups = groupsSeen(posted);
    const failures = requests.reduce((sum, r) => sum + r.failures.length, 0);
    console.log(
      [
        "",
        `crash-storm summary (seed ${SEED}, ${killTimes.length} kill(s) after ${killTimes.join(", ")} ms of storm):`,
        `  keys: ${requests.length}; 201: ${stats.created}; refused 409: ${stats.refused}; duplicates sent together: ${duplicatesSent}`,
        `  keys cut by a kill before any final answer: ${stats.cutByKill} (executed before the kill, reply lost, replayed after: ${stats.lostReplies}; executed only after a restart: ${stats.executedAfterRestart})`,
        `  left by the kill: ${pendingAtKills} transfers debited but not posted, summed over the kills (finished after the restart by retries or the alarm)`,
        `  recovery alarm alone: ${alarmCheck}`,
        `  keys that needed more than one attempt after the restart: ${retried}; keys that saw a 5xx: ${stats.fivexx} (${stats.fivexxResolved} resolved to a final answer)`,
        `  connection failures: ${failures}; answers by phase and status: ${[...statuses].map(([k, v]) => `${k}: ${v}`).join(", ")}`,
        `  groups (posted transfers of one sender sharing a debit timestamp): hot sender ${hotGroups.transfers} transfers in ${hotGroups.groups} groups, ${hotGroups.multi} of 2+ holding ${hotGroups.inMulti}, largest ${hotGroups.max}; all senders: ${allGroups.multi} groups of 2+ holding ${allGroups.inMulti} of ${allGroups.transfers}, largest ${allGroups.max}`,
        `  time: ${elapsed()}`,
      ].join("\n"),
    );
  } catch (error) {
    problems.push(`aborted: ${(error as Error).stack ?? error}`);
  } finally {
    await server.stop();
    writeFileSync(path.join(persistDir, "server-last.log"), server.log());
    if (problems.length) keepDir = true;
    if (!keepDir) rmSync(persistDir, { recursive: true, force: true });
    else log(`state kept in ${persistDir}`);
  }
  if (problems.length) {
    console.error(`\ncrash-storm: FAILED, ${problems.length} violation(s):`);
    for (const problem of problems.slice(0, 50)) console.error(`  - ${problem}`);
    if (problems.length > 50) console.error(`  … and ${problems.length - 50} more`);
    return 1;
  }
  console.log("crash-storm: all invariants hold");
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
