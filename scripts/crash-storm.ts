import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { BENCH_VARS } from "../bench/world.ts";
import { migratedPersistDir, serveOn } from "../test/e2e/support/server.ts";

/**
 * `npm run crash-storm -- [--seed=N] [--kill-after-ms=N] [--crashes=N] [--users=N] [--hot=N] [--pairs=N]
 *   [--messengers=N] [--groups=N] [--directs=N] [--keep] [--tamper] [--tamper-chat]`
 *
 * Money and messages survive a power cut: `wrangler dev` (127.0.0.1 only) over a fresh persist
 * directory, users registered through the API and funded by keyed admin grants (SIGNUP_CREDITS 0,
 * so the books are exact), a few group and direct chats opened, then a storm of keyed requests:
 * credit transfers (one hot sender at high concurrency, so its wallet commits in groups, plus
 * random pairs and overdrafts) and message sends (v2 into the group and direct chats, v1 to random
 * users, some with a `clientMessageId`), each sometimes sent twice at once with the same key and
 * body. Mid-storm it SIGKILLs the whole server process group, restarts it on the same directory
 * and retries every recorded request with its key and body until it has a final answer, then once
 * more. Then the invariants: one outcome per key (byte-identical `data`/`code`: a send answers its
 * original message, same id and seq; one original answer, later ones marked as replays), every
 * transfer 201 posted, a clean reconciliation with balances == grants, each balance == grants +
 * received − sent (from the 201s), the D1 directory's `chats.last_seq` catching up with every chat
 * object within seconds (their alarms flush it), and, read from the objects' SQLite files once the
 * server is down: every chat's seq 1..last_seq, exactly one `credit_transfer` message per posted
 * transfer (in its pair's chat, as its 201 said) and none for a voided one, every keyed send's
 * message exactly once where its answer put it with its stored outcome byte for byte, no message
 * that no 201 announced, and D1 `chats.last_seq` equal to each object's.
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
const pick = <T>(items: readonly T[]): T => items[randomInt(0, items.length - 1)] as T;

const KILL_AFTER_MS = numberFlag("kill-after-ms", randomInt(300, 15_000));
/** Kill and restart this many times; each storm after a restart also re-sends keys that have no final answer yet. */
const CRASHES = Math.max(1, numberFlag("crashes", 1));
const LATER_KILLS_MS = Array.from({ length: CRASHES - 1 }, () => randomInt(300, 6_000));
const USERS = numberFlag("users", 24);
const HOT_CONCURRENCY = numberFlag("hot", 32);
const PAIR_CONCURRENCY = numberFlag("pairs", 16);
/** Concurrent keyed message senders (v2 into the storm's chats, v1 to random users). */
const MESSENGER_CONCURRENCY = numberFlag("messengers", 12);
const GROUPS = numberFlag("groups", 4);
const DIRECTS = numberFlag("directs", 6);
const KEEP = flags.keep === "true";
/** The checker's own check: one wallet gets a credit from nowhere while the server is down; the run must then fail. */
const TAMPER = flags.tamper === "true";
/** The checker's own check of the chat objects: one message is removed from one object while the server is down. */
const TAMPER_CHAT = flags["tamper-chat"] === "true";
const HOT_GRANT = 3_000;
const USER_GRANT = 500;
/** MAX_TRANSFER_AMOUNT's default: more than all the money there is, so always an overdraft. */
const OVERDRAFT = 100_000;
const RETRY_BUDGET_MS = 90_000;
/** How long the D1 directory may take to catch up with the chat objects once nothing is sent (the flush is ~250 ms). */
const DIRECTORY_CATCH_UP_MS = 15_000;
/** Every storm message's content starts with this, then its key: a message in an object names the request it came from. */
const CONTENT_PREFIX = "storm message ";
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
/** A chat the storm sends into with v2 (members as user indexes). */
type StormChat = { id: string; type: "direct" | "group"; members: number[] };
type TransferBody = { recipientId: string; amount: number; note?: string };
type V1Body = { recipientId: string; content: string };
type V2Body = { chatId: string; content: string; clientMessageId?: string };
type Phase = "storm" | "retry" | "confirm";
/** `sentAt`/`receivedAt` order answers: one sent after a final answer arrived must be a replay. */
type Answer = { phase: Phase; status: number; text: string; replayed: boolean; sentAt: number; receivedAt: number };
type Keyed = {
  key: string;
  sender: number;
  answers: Answer[];
  failures: string[];
  /** When a send of it first failed without any answer (cut by a kill). */
  firstFailureAt?: number;
} & (
  | { kind: "transfer"; recipient: number; body: TransferBody }
  | { kind: "v1"; recipient: number; body: V1Body }
  | { kind: "v2"; chat: StormChat; body: V2Body }
);
type TransferRequest = Extract<Keyed, { kind: "transfer" }>;
type SendRequest = Exclude<Keyed, { kind: "transfer" }>;
type Kind = Keyed["kind"];
const PATHS: Record<Kind, string> = {
  transfer: "/api/v1/messages/credit-transfer",
  v1: "/api/v1/messages",
  v2: "/api/v2/messages",
};
type Envelope = { statusCode: number; data: any; code?: string; errors: string[] | null };
/** A posted transfer as its 201 announced it. */
type Posted = { request: TransferRequest; transfer: any };
/** A message a keyed send's first final answer announced. */
type Sent = { request: SendRequest; status: number; text: string; message: any };

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

/**
 * The chats the message storm sends into with v2: `GROUPS` groups of 4..9 random members and
 * `DIRECTS` direct chats, some with the hot sender (so its transfers' messages interleave with
 * texts in one chat). Opened before the storm, unkeyed, like a client would.
 */
async function openChats(users: User[]): Promise<StormChat[]> {
  const indexOf = new Map(users.map((user, index) => [user.id, index]));
  const asStormChat = (json: Envelope): StormChat => ({
    id: json.data.id,
    type: json.data.type,
    members: (json.data.members as { userId: string }[]).map((m) => indexOf.get(m.userId) as number),
  });
  const chats: StormChat[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const owner = randomInt(0, users.length - 1);
    const others = users.map((_, index) => index).filter((index) => index !== owner);
    const members = others.sort(() => random() - 0.5).slice(0, randomInt(3, Math.min(8, others.length)));
    const body = { type: "group", title: `storm group ${g}`, memberIds: members.map((m) => (users[m] as User).id) };
    chats.push(
      asStormChat(await expectJson("create group", call("POST", "/api/v1/chats", (users[owner] as User).token, body), [201])),
    );
  }
  const pairs = new Set<string>();
  for (let d = 0; d < DIRECTS && pairs.size < (users.length * (users.length - 1)) / 2; d++) {
    const a = d < DIRECTS / 2 ? 0 : randomInt(0, users.length - 1);
    const b = otherThan(users.length, a);
    const pair = [a, b].sort((x, y) => x - y).join("-");
    if (pairs.has(pair)) continue;
    pairs.add(pair);
    const body = { type: "direct", memberId: (users[b] as User).id };
    chats.push(
      asStormChat(await expectJson("create direct", call("POST", "/api/v1/chats", (users[a] as User).token, body), [200, 201])),
    );
  }
  return chats;
}

/** A random index in 0..count-1 other than `index`. */
function otherThan(count: number, index: number) {
  const other = randomInt(0, count - 2);
  return other >= index ? other + 1 : other;
}

// ------------------------------------------------------------------ the storm

const requests: Keyed[] = [];
let keyCounter = 0;
let killed = false;
let duplicatesSent = 0;

const nextKey = () => `crash-${SEED}-${++keyCounter}`;

function newTransfer(users: User[], sender: number, recipient: number, amount: number): Keyed {
  const body: TransferBody = { recipientId: (users[recipient] as User).id, amount };
  if (random() < 0.2) body.note = `storm ${keyCounter}`;
  const request: Keyed = { kind: "transfer", key: nextKey(), sender, recipient, body, answers: [], failures: [] };
  requests.push(request);
  return request;
}

/** A keyed text message: v2 into one of the storm's chats (by a member), or v1 to a random user. Its content names its key. */
function newMessage(users: User[], chats: StormChat[]): Keyed {
  const key = nextKey();
  const content = `${CONTENT_PREFIX}${key}`;
  let request: Keyed;
  if (chats.length === 0 || random() < 0.25) {
    const sender = randomInt(0, users.length - 1);
    const recipient = otherThan(users.length, sender);
    request = {
      kind: "v1",
      key,
      sender,
      recipient,
      body: { recipientId: (users[recipient] as User).id, content },
      answers: [],
      failures: [],
    };
  } else {
    const chat = pick(chats);
    const body: V2Body = { chatId: chat.id, content };
    if (random() < 0.3) body.clientMessageId = `client-${key}`;
    request = { kind: "v2", key, sender: pick(chat.members), chat, body, answers: [], failures: [] };
  }
  requests.push(request);
  return request;
}

async function send(users: User[], request: Keyed, phase: Phase): Promise<Answer | undefined> {
  const sentAt = performance.now();
  try {
    const { status, text, replayed } = await call(
      "POST",
      PATHS[request.kind],
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

async function storm(users: User[], chats: StormChat[], resend: boolean) {
  const hot = Array.from({ length: HOT_CONCURRENCY }, async () => {
    while (!killed) {
      const amount = random() < 0.05 ? OVERDRAFT : randomInt(1, 20);
      await fire(users, newTransfer(users, 0, otherThan(users.length, 0), amount));
    }
  });
  const pairs = Array.from({ length: PAIR_CONCURRENCY }, async () => {
    while (!killed) {
      const sender = randomInt(0, users.length - 1);
      const roll = random();
      // Amounts near a small wallet's balance run it dry mid-storm, so refusals interleave with debits.
      const amount = roll < 0.05 ? OVERDRAFT : roll < 0.2 ? randomInt(200, 600) : randomInt(1, 60);
      await fire(users, newTransfer(users, sender, otherThan(users.length, sender), amount));
    }
  });
  const messengers = Array.from({ length: MESSENGER_CONCURRENCY }, async () => {
    while (!killed) await fire(users, newMessage(users, chats));
  });
  // After a restart, keys left without a final answer are re-sent while the new storm runs.
  const unresolved = resend ? requests.filter((r) => !r.answers.some((a) => isFinal(a.status))) : [];
  const resenders = Array.from({ length: resend ? 4 : 0 }, async () => {
    while (!killed && unresolved.length) await send(users, unresolved.shift() as Keyed, "storm");
  });
  await Promise.all([...hot, ...pairs, ...messengers, ...resenders]);
}

// ------------------------------------------------------------------ after the restart

/** 200 is a send answered with the message its `clientMessageId` already named (none here: each is unique). */
const isFinal = (status: number) => status === 201 || status === 200 || (status >= 400 && status < 500 && status !== 429);

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
    sent: 0,
    cutByKill: 0,
    executedAfterRestart: 0,
    lostReplies: 0,
    sendsCutByKill: 0,
    sendsLostReplies: 0,
    fivexx: 0,
    fivexxResolved: 0,
  };
  const posted: Posted[] = [];
  const sent: Sent[] = [];
  for (const request of requests) {
    const finals = request.answers.filter((answer) => isFinal(answer.status));
    const serverErrors = request.answers.filter((answer) => answer.status >= 500);
    if (serverErrors.length) {
      stats.fivexx++;
      if (finals.length) stats.fivexxResolved++;
    }
    if (!finals.length) {
      problems.push(
        `${request.kind} key ${request.key}: no final answer (${request.answers.map((a) => `${a.phase} ${a.status}`).join(", ")}; ${request.failures.slice(-3).join("; ")})`,
      );
      continue;
    }
    const outcomes = new Set(finals.map(outcomeOf));
    if (outcomes.size !== 1) {
      problems.push(
        `${request.kind} key ${request.key}: ${outcomes.size} different outcomes: ${[...outcomes].join(" | ").slice(0, 1500)}`,
      );
    }
    const first = finals[0] as Answer;
    const json = parse(first);
    if (request.kind === "transfer") {
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
    } else if (first.status === 201) {
      // Every storm send is allowed (members, no blocks, unique clientMessageIds): a 201 with its message.
      stats.sent++;
      const message = json?.data;
      const chatId = request.kind === "v2" ? request.body.chatId : message?.chatId;
      if (
        !message ||
        message.type !== "text" ||
        message.senderId !== (users[request.sender] as User).id ||
        message.content !== request.body.content ||
        message.chatId !== chatId ||
        !Number.isInteger(message.seq) ||
        message.seq < 1 ||
        message.clientMessageId !== (request.kind === "v2" ? (request.body.clientMessageId ?? null) : null)
      ) {
        problems.push(
          `${request.kind} key ${request.key}: 201 does not match its sender and body ${JSON.stringify(request.body)}: ${first.text}`,
        );
      }
      if (message) sent.push({ request, status: first.status, text: first.text, message });
    } else {
      problems.push(`${request.kind} key ${request.key}: unexpected final answer ${first.status} ${first.text.slice(0, 300)}`);
    }
    const firstFinal = [...finals].sort((a, b) => a.receivedAt - b.receivedAt)[0] as Answer;
    if (request.firstFailureAt !== undefined && firstFinal.receivedAt > request.firstFailureAt) {
      // Cut by a kill before any final answer: a first answer that is a replay means it had executed
      // before the kill and only its reply was lost.
      stats.cutByKill++;
      if (firstFinal.replayed) stats.lostReplies++;
      else stats.executedAfterRestart++;
      if (request.kind !== "transfer") {
        stats.sendsCutByKill++;
        if (firstFinal.replayed) stats.sendsLostReplies++;
      }
    }
    // One execution per key: at most one final answer not marked as a replay, and every answer to a
    // request sent after a final answer had arrived is a replay.
    const firstFinalAt = Math.min(...finals.map((answer) => answer.receivedAt));
    const originals = finals.filter((answer) => !answer.replayed);
    if (originals.length > 1)
      problems.push(`${request.kind} key ${request.key}: ${originals.length} final answers not marked Idempotent-Replayed`);
    for (const answer of finals) {
      if (answer.sentAt > firstFinalAt && !answer.replayed) {
        problems.push(
          `${request.kind} key ${request.key}: ${answer.phase} answer ${answer.status} after a final answer, not marked Idempotent-Replayed`,
        );
      }
    }
  }
  // A pair has one direct chat: every v1 send and every transfer of a pair names the same one.
  const directOf = new Map<string, string>();
  const pairChat = (a: number, b: number, chatId: string, what: string) => {
    const pair = [a, b].sort((x, y) => x - y).join("-");
    const known = directOf.get(pair);
    if (known === undefined) directOf.set(pair, chatId);
    else if (known !== chatId)
      problems.push(`users ${pair}: ${what} went to chat ${chatId}, another of the pair's answers named ${known}`);
  };
  for (const { request, transfer } of posted)
    pairChat(request.sender, request.recipient, transfer.chatId, `transfer ${transfer.transferId}`);
  for (const { request, message } of sent) {
    if (request.kind === "v1") pairChat(request.sender, request.recipient, message.chatId, `v1 key ${request.key}`);
    if (request.kind === "v2" && request.chat.type === "direct") {
      const [a, b] = request.chat.members as [number, number];
      pairChat(a, b, message.chatId, `v2 key ${request.key}`);
    }
  }
  return { stats, posted, sent };
}

async function settleAndCheckPosted(users: User[], posted: Posted[], problems: string[]) {
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

async function checkBalances(users: User[], posted: Posted[], problems: string[]) {
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

/**
 * The D1 directory catches up with the chat objects: every chat in the users' lists (D1's summary
 * rows) shows the `lastSeq` its object answers (GET /chats/{id}) within DIRECTORY_CATCH_UP_MS once
 * nothing is sent. The objects flush it behind their answers, and by their alarm after a restart
 * for the summaries a kill left owed. Returns how many chats, and how long it took.
 */
async function checkDirectory(users: User[], problems: string[]) {
  const since = Date.now();
  let lagging: string[] = [];
  let chats = 0;
  let polls = 0;
  for (;;) {
    polls++;
    const listed = new Map<string, { member: number; lastSeq: number }>();
    await inParallel(
      users.map((user, index) => ({ user, index })),
      8,
      async ({ user, index }) => {
        let cursor: string | null = null;
        do {
          const query: string = cursor === null ? "?limit=100" : `?limit=100&cursor=${encodeURIComponent(cursor)}`;
          const page = await expectJson("GET chats", call("GET", `/api/v1/chats${query}`, user.token), [200]);
          for (const chat of page.data.items) listed.set(chat.id, { member: index, lastSeq: chat.lastSeq });
          cursor = page.data.nextCursor;
        } while (cursor !== null);
      },
    );
    const behind: string[] = [];
    await inParallel([...listed], 16, async ([chatId, { member, lastSeq }]) => {
      const chat = await expectJson("GET chat", call("GET", `/api/v1/chats/${chatId}`, (users[member] as User).token), [200]);
      if (chat.data.lastSeq !== lastSeq)
        behind.push(`chat ${chatId}: listed lastSeq ${lastSeq}, its object's ${chat.data.lastSeq}`);
    });
    lagging = behind;
    chats = listed.size;
    if (!lagging.length || Date.now() - since > DIRECTORY_CATCH_UP_MS) break;
    await sleep(500);
  }
  const waited = Date.now() - since;
  for (const line of lagging) problems.push(`D1 directory still behind its object after ${waited} ms: ${line}`);
  log(
    `directory: ${chats} chats listed; ${lagging.length ? `${lagging.length} still behind` : "every listed lastSeq equals its object's"} after ${polls} poll(s), ${waited} ms`,
  );
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

/** Where Miniflare keeps one Durable Object class's state: `v3/do/<script>-<class>/`. */
function classDir(persistDir: string, className: string): string {
  const dir = path.join(persistDir, "v3/do");
  const found = readdirSync(dir).find((name) => name.endsWith(`-${className}`));
  if (!found) throw new Error(`no ${className} state under ${dir}`);
  return path.join(dir, found);
}

/**
 * One Durable Object class's SQLite files, one per object (named by the object id); the class's
 * `metadata.sqlite` is workerd's alarm schedule (`_cf_ALARM`: actor_id, scheduled_time in ns), not an object.
 */
function objectFiles(persistDir: string, className: string): string[] {
  const dir = classDir(persistDir, className);
  return readdirSync(dir)
    .filter((name) => name.endsWith(".sqlite") && name !== "metadata.sqlite")
    .map((name) => path.join(dir, name));
}

/** The class's alarm schedule (object id → epoch ms), read from a copy of `metadata.sqlite`. */
function alarmSchedule(persistDir: string, className: string): Map<string, number> {
  const file = path.join(classDir(persistDir, className), "metadata.sqlite");
  const schedule = new Map<string, number>();
  if (!existsSync(file)) return schedule;
  const scratch = mkdtempSync(path.join(tmpdir(), "credit-chat-crash-read-"));
  try {
    const copy = path.join(scratch, "metadata.sqlite");
    for (const suffix of ["", "-wal", "-shm"]) if (existsSync(file + suffix)) copyFileSync(file + suffix, copy + suffix);
    const sqlite = new DatabaseSync(copy);
    try {
      const rows = sqlite.prepare("SELECT actor_id, scheduled_time / 1000000 AS scheduled_time FROM _cf_ALARM").all() as {
        actor_id: string;
        scheduled_time: number | null;
      }[];
      for (const row of rows) if (row.scheduled_time !== null) schedule.set(row.actor_id, row.scheduled_time);
    } catch (error) {
      if (!String(error).includes("no such table")) throw error;
    } finally {
      sqlite.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return schedule;
}

/**
 * Reads every object of a class from copies of its files with their WAL, opened normally, so SQLite
 * recovers the WAL a killed server left without touching the original (the server is down).
 */
function readObjects<T>(persistDir: string, className: string, read: (sqlite: DatabaseSync, objectId: string) => T): T[] {
  const scratch = mkdtempSync(path.join(tmpdir(), "credit-chat-crash-read-"));
  try {
    return objectFiles(persistDir, className).map((file) => {
      const copy = path.join(scratch, path.basename(file));
      for (const suffix of ["", "-wal", "-shm"]) {
        if (existsSync(file + suffix)) copyFileSync(file + suffix, copy + suffix);
      }
      const sqlite = new DatabaseSync(copy);
      try {
        return read(sqlite, path.basename(file, ".sqlite"));
      } finally {
        sqlite.close();
      }
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

type ChatMessage = {
  seq: number;
  id: string;
  sender_id: string;
  type: string;
  content: string | null;
  client_message_id: string | null;
  transfer_id: string | null;
  transfer_recipient_id: string | null;
  transfer_amount: number | null;
};
type SendKeyRow = { user_id: string; key: string; status: number; body: string; message_id: string };
type ChatState = {
  chatId: string;
  type: string;
  lastSeq: number;
  flushedSeq: number;
  /** The object's alarm as it stores it (`_cf_METADATA`, key 1), and as workerd's schedule has it; epoch ms or null. */
  alarm: number | null;
  scheduled: number | null;
  members: string[];
  messages: ChatMessage[];
  keys: SendKeyRow[];
  totals: { sender_id: string; count: number; amount: number }[];
};

/** Every chat object's state (null for an object that never got its chat row). */
function readChats(persistDir: string): (ChatState | null)[] {
  const schedule = alarmSchedule(persistDir, "ChatDO");
  return readObjects(persistDir, "ChatDO", (sqlite, objectId): ChatState | null => {
    // An object the kill caught before its first write has no tables yet.
    if (!sqlite.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chat'").get()) return null;
    const meta = sqlite.prepare("SELECT * FROM chat WHERE id = 1").get() as Record<string, any> | undefined;
    if (!meta) return null;
    let alarm: number | null = null;
    try {
      alarm = ((sqlite.prepare("SELECT value FROM _cf_METADATA WHERE key = 1").get() as { value: number | null } | undefined)
        ?.value ?? null) as number | null;
    } catch {
      // no metadata table: no alarm was ever set
    }
    return {
      chatId: meta.chat_id,
      type: meta.type,
      lastSeq: meta.last_seq,
      flushedSeq: meta.flushed_seq,
      alarm,
      scheduled: schedule.get(objectId) ?? null,
      members: (sqlite.prepare("SELECT user_id FROM members").all() as { user_id: string }[]).map((row) => row.user_id),
      messages: sqlite
        .prepare(
          "SELECT seq, id, sender_id, type, content, client_message_id, transfer_id, transfer_recipient_id, transfer_amount FROM messages ORDER BY seq",
        )
        .all() as ChatMessage[],
      keys: sqlite.prepare("SELECT user_id, key, status, body, message_id FROM send_keys").all() as SendKeyRow[],
      totals: sqlite.prepare("SELECT sender_id, count, amount FROM transfer_totals").all() as ChatState["totals"],
    };
  });
}

type TransferOut = {
  transfer_id: string;
  state: string;
  recipient_id: string;
  amount: number;
  message_id: string;
  chat_id: string | null;
};

/** Every wallet object's sent transfers, with its owner (null for an object without a wallet row). */
function readWallets(persistDir: string) {
  return readObjects(persistDir, "WalletDO", (sqlite) => {
    const tables = new Set(
      (sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name),
    );
    const owner = tables.has("wallet")
      ? ((sqlite.prepare("SELECT user_id FROM wallet WHERE id = 1").get() as { user_id: string } | undefined)?.user_id ?? null)
      : null;
    const transfers = tables.has("transfers_out")
      ? (sqlite
          .prepare("SELECT transfer_id, state, recipient_id, amount, message_id, chat_id FROM transfers_out")
          .all() as TransferOut[])
      : [];
    return { owner, transfers };
  });
}

/**
 * The books as the chat objects hold them (read from their files once the server is down), against
 * the answers, the wallet objects and the D1 directory: every chat's seq runs 1..last_seq; each
 * posted transfer has exactly one `credit_transfer` message, in the chat and with the id its 201
 * named, and a voided one none; each keyed send's message is where its answer put it, exactly once,
 * with its stored outcome (the answered bytes); no message that no 201 announced; the directory's
 * `chats.last_seq` equals each object's.
 */
async function checkChatObjects(persistDir: string, users: User[], posted: Posted[], sent: Sent[], problems: string[]) {
  const read = readChats(persistDir);
  const chats = read.filter((chat): chat is ChatState => chat !== null);
  const counts = { text: 0, credit_transfer: 0, system: 0, keys: 0 };
  const byChatId = new Map<string, ChatState>();
  const transferMessages = new Map<string, { chat: ChatState; row: ChatMessage }[]>();
  const textByContent = new Map<string, { chat: ChatState; row: ChatMessage }[]>();
  const directPairs = new Map<string, string>();
  for (const chat of chats) {
    if (byChatId.has(chat.chatId)) problems.push(`chat ${chat.chatId}: held by two objects`);
    byChatId.set(chat.chatId, chat);
    const seqs = chat.messages.map((row) => row.seq);
    if (seqs.length !== chat.lastSeq || seqs.some((seq, i) => seq !== i + 1)) {
      const missing = Array.from({ length: chat.lastSeq }, (_, i) => i + 1).filter((seq) => !seqs.includes(seq));
      problems.push(
        `chat ${chat.chatId}: seq not 1..${chat.lastSeq}: ${seqs.length} messages, missing ${JSON.stringify(missing.slice(0, 20))}, above last_seq ${JSON.stringify(seqs.filter((seq) => seq > chat.lastSeq))}`,
      );
    }
    const totals = new Map<string, { count: number; amount: number }>();
    for (const row of chat.messages) {
      if (row.type === "text" || row.type === "credit_transfer" || row.type === "system") counts[row.type]++;
      if (row.type === "credit_transfer" && row.transfer_id !== null) {
        transferMessages.set(row.transfer_id, [...(transferMessages.get(row.transfer_id) ?? []), { chat, row }]);
        const total = totals.get(row.sender_id) ?? { count: 0, amount: 0 };
        totals.set(row.sender_id, { count: total.count + 1, amount: total.amount + (row.transfer_amount ?? 0) });
      }
      if (row.type === "text")
        textByContent.set(row.content ?? "", [...(textByContent.get(row.content ?? "") ?? []), { chat, row }]);
    }
    const stored = new Map(chat.totals.map((t) => [t.sender_id, { count: t.count, amount: t.amount }]));
    for (const sender of new Set([...totals.keys(), ...stored.keys()])) {
      const [a, b] = [totals.get(sender) ?? { count: 0, amount: 0 }, stored.get(sender) ?? { count: 0, amount: 0 }];
      if (a.count !== b.count || a.amount !== b.amount)
        problems.push(
          `chat ${chat.chatId}: transfer_totals of ${sender} ${JSON.stringify(b)}, its messages sum to ${JSON.stringify(a)}`,
        );
    }
    counts.keys += chat.keys.length;
    for (const key of chat.keys) {
      const row = chat.messages.find((m) => m.id === key.message_id);
      if (!row || row.sender_id !== key.user_id)
        problems.push(
          `chat ${chat.chatId}: send key ${key.key} of ${key.user_id} names message ${key.message_id}, ${row ? `sent by ${row.sender_id}` : "not in the chat"}`,
        );
    }
    if (chat.type === "direct") {
      const pair = [...chat.members].sort().join("-");
      const other = directPairs.get(pair);
      if (other) problems.push(`users ${pair}: two direct chats, ${other} and ${chat.chatId}`);
      directPairs.set(pair, chat.chatId);
    }
  }

  // Transfers: the wallets' own record of every transfer against the chats' messages.
  const wallets = readWallets(persistDir);
  const outs = new Map<string, { owner: string | null; out: TransferOut }>();
  const states = { posted: 0, voided: 0, pending: 0 };
  for (const { owner, transfers } of wallets) {
    for (const out of transfers) {
      outs.set(out.transfer_id, { owner, out });
      if (out.state === "posted" || out.state === "voided" || out.state === "pending") states[out.state]++;
      const copies = transferMessages.get(out.transfer_id) ?? [];
      const where = copies.map(({ chat, row }) => `${chat.chatId}#${row.seq}`).join(", ");
      if (out.state === "voided" && copies.length)
        problems.push(`transfer ${out.transfer_id} is voided but has credit_transfer message(s) at ${where}`);
      if (out.state === "posted" && copies.length !== 1)
        problems.push(
          `transfer ${out.transfer_id} is posted with ${copies.length} credit_transfer messages${where ? ` (${where})` : ""}`,
        );
      const copy = copies[0];
      if (out.state === "posted" && copy) {
        const { chat, row } = copy;
        if (
          chat.chatId !== out.chat_id ||
          row.id !== out.message_id ||
          row.sender_id !== owner ||
          row.transfer_recipient_id !== out.recipient_id ||
          row.transfer_amount !== out.amount
        ) {
          problems.push(
            `transfer ${out.transfer_id}: message ${JSON.stringify({ chatId: chat.chatId, ...row })} does not match its sender's record ${JSON.stringify({ owner, ...out })}`,
          );
        }
      }
    }
  }
  for (const [transferId, copies] of transferMessages) {
    const known = outs.get(transferId);
    if (!known || known.out.state !== "posted")
      problems.push(
        `credit_transfer message(s) ${copies.map(({ chat, row }) => `${chat.chatId}#${row.seq}`).join(", ")} for transfer ${transferId}, ${known ? known.out.state : "unknown"} in its sender's wallet`,
      );
  }
  for (const { request, transfer } of posted) {
    const copies = transferMessages.get(transfer.transferId) ?? [];
    const copy = copies[0];
    if (!copy) {
      problems.push(
        `transfer ${transfer.transferId} (key ${request.key}) answered 201 but no chat holds its credit_transfer message`,
      );
      continue;
    }
    const { chat, row } = copy;
    if (
      chat.chatId !== transfer.chatId ||
      row.id !== transfer.messageId ||
      row.sender_id !== (users[request.sender] as User).id ||
      row.transfer_recipient_id !== request.body.recipientId ||
      row.transfer_amount !== request.body.amount
    ) {
      problems.push(
        `transfer ${transfer.transferId}: message ${JSON.stringify({ chatId: chat.chatId, ...row })} does not match its 201 ${JSON.stringify(transfer)}`,
      );
    }
  }

  // Keyed sends: each answered message once, where its answer put it, with its stored outcome.
  const announced = new Set<string>();
  for (const { request, status, text, message } of sent) {
    const senderId = (users[request.sender] as User).id;
    announced.add(request.body.content);
    const copies = textByContent.get(request.body.content) ?? [];
    if (copies.length !== 1) {
      problems.push(
        `${request.kind} key ${request.key}: answered ${status} with message ${message.id} (chat ${message.chatId} seq ${message.seq}) but ${copies.length} messages hold its content${copies.length ? `: ${copies.map(({ chat, row }) => `${chat.chatId}#${row.seq} ${row.id}`).join(", ")}` : ""}`,
      );
    }
    const copy = copies.find(({ row }) => row.id === message.id) ?? copies[0];
    if (copy) {
      const { chat, row } = copy;
      const clientMessageId = request.kind === "v2" ? (request.body.clientMessageId ?? null) : null;
      if (
        chat.chatId !== message.chatId ||
        row.id !== message.id ||
        row.seq !== message.seq ||
        row.sender_id !== senderId ||
        row.client_message_id !== clientMessageId
      ) {
        problems.push(
          `${request.kind} key ${request.key}: answered message ${message.id} (chat ${message.chatId} seq ${message.seq}), the object holds ${JSON.stringify({ chatId: chat.chatId, ...row })}`,
        );
      }
    }
    const chat = byChatId.get(message.chatId);
    const stored = chat?.keys.find((key) => key.user_id === senderId && key.key === request.key);
    if (!stored) problems.push(`${request.kind} key ${request.key}: chat ${message.chatId} stores no outcome for it`);
    else if (stored.message_id !== message.id || stored.status !== status || stored.body !== text) {
      problems.push(
        `${request.kind} key ${request.key}: stored outcome ${stored.status} ${stored.body.slice(0, 300)} is not the answer ${status} ${text.slice(0, 300)}`,
      );
    }
  }
  const byContent = new Map<string, SendRequest>();
  for (const request of requests) if (request.kind !== "transfer") byContent.set(request.body.content, request);
  for (const [content, copies] of textByContent) {
    if (announced.has(content)) continue;
    const request = byContent.get(content);
    const where = copies.map(({ chat, row }) => `${chat.chatId}#${row.seq} ${row.id}`).join(", ");
    problems.push(
      request
        ? `${request.kind} key ${request.key}: message(s) ${where} although no answer announced one (answers: ${request.answers.map((a) => `${a.phase} ${a.status}`).join(", ") || "none"})`
        : `text message(s) ${where} that no storm request sent: ${content.slice(0, 100)}`,
    );
  }

  // The D1 directory: one row per chat, its last_seq the object's.
  const directory = await d1(persistDir, "SELECT id, type, last_seq FROM chats");
  const listed = new Map(directory.map((row) => [row.id as string, row]));
  let behind = 0;
  const at = (ms: number | null) => (ms === null ? "none" : new Date(ms).toISOString());
  for (const chat of chats) {
    const row = listed.get(chat.chatId);
    if (!row) problems.push(`chat ${chat.chatId}: an object with no D1 directory row`);
    else if (row.last_seq !== chat.lastSeq) {
      behind++;
      problems.push(
        `chat ${chat.chatId}: D1 chats.last_seq ${row.last_seq}, the object's last_seq ${chat.lastSeq} (flushed_seq ${chat.flushedSeq}, alarm ${at(chat.alarm)}, scheduled ${at(chat.scheduled)})`,
      );
    }
  }
  for (const row of directory) {
    if (!byChatId.has(row.id as string) && row.last_seq !== 0)
      problems.push(`chat ${row.id}: D1 says last_seq ${row.last_seq} but no object holds the chat`);
  }

  const messages = chats.reduce((sum, chat) => sum + chat.messages.length, 0);
  log(
    `chat objects: ${chats.length} chats (${read.length - chats.length} objects without one), ${messages} messages (${counts.text} text, ${counts.credit_transfer} credit_transfer, ${counts.system} system), ${counts.keys} send keys stored; wallets: ${states.posted} posted, ${states.voided} voided, ${states.pending} pending; ${posted.length} transfer 201s, ${sent.length} send 201s; D1: ${directory.length} directory rows, ${behind} behind their object`,
  );
  return { chats: chats.length, messages, ...counts, posted: states.posted, voided: states.voided };
}

/**
 * A group's debits share one timestamp (`commitGroup` takes `now` once), so a sender's posted
 * transfers with the same `createdAt` were debited in one group (groups take milliseconds, so two
 * groups of one wallet landing in the same millisecond is unlikely): a lower bound on grouping.
 */
function groupsSeen(posted: Posted[], sender?: number) {
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

/**
 * What the kill left in the objects (copies read while the server is down): debits committed but
 * not yet posted (`pending`) are the transfers a crash mid-group leaves to recovery; chats whose
 * directory summary was still owed (`flushed_seq` < `last_seq`) are left to their alarm.
 */
function stateAtKill(persistDir: string) {
  let pending = 0;
  let posted = 0;
  for (const { transfers } of readWallets(persistDir)) {
    for (const out of transfers) {
      if (out.state === "pending") pending++;
      else if (out.state === "posted") posted++;
    }
  }
  const chats = readChats(persistDir).filter((chat): chat is ChatState => chat !== null);
  return {
    pending,
    posted,
    chats: chats.length,
    messages: chats.reduce((sum, chat) => sum + chat.lastSeq, 0),
    owed: chats.filter((chat) => chat.flushedSeq < chat.lastSeq).length,
  };
}

/** A credit from nowhere in the first wallet object file found (the server is down): the checks must catch it. */
function tamper(persistDir: string) {
  for (const file of objectFiles(persistDir, "WalletDO")) {
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

/** One message removed from the middle of the first chat object with 3+ (the server is down): a seq gap the checks must catch. */
function tamperChat(persistDir: string) {
  for (const file of objectFiles(persistDir, "ChatDO")) {
    const sqlite = new DatabaseSync(file);
    try {
      const meta = sqlite.prepare("SELECT chat_id, last_seq FROM chat WHERE id = 1").get() as
        | { chat_id: string; last_seq: number }
        | undefined;
      if (!meta || meta.last_seq < 3) continue;
      const seq = Math.floor(meta.last_seq / 2);
      sqlite.prepare("DELETE FROM messages WHERE seq = ?").run(seq);
      return log(`tampered: removed message seq ${seq} of ${meta.last_seq} from chat ${meta.chat_id}`);
    } finally {
      sqlite.close();
    }
  }
  throw new Error("no chat object with 3 messages to tamper with");
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  log(
    `seed ${SEED}, ${CRASHES} kill(s) after ${[KILL_AFTER_MS, ...LATER_KILLS_MS].join(", ")} ms of storm, ${USERS} users, hot sender ×${HOT_CONCURRENCY}, random pairs ×${PAIR_CONCURRENCY}, messages ×${MESSENGER_CONCURRENCY} into ${GROUPS} groups, ${DIRECTS} direct chats and v1`,
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
    const chats = await openChats(users);
    log(
      `${users.length} users registered and funded (${granted} credits granted), ${chats.length} chats opened (${chats.filter((c) => c.type === "group").length} groups), storm starts`,
    );

    let pendingAtKills = 0;
    let pendingAtLastKill = 0;
    let owedAtKills = 0;
    let alarmCheck = "not exercised (the last kill left no debit pending)";
    let lastKillAt = 0;
    const killTimes = [KILL_AFTER_MS, ...LATER_KILLS_MS];
    for (const [crash, killAfter] of killTimes.entries()) {
      killed = false;
      const sentBefore = requests.length;
      const stormStarted = Date.now();
      const running = storm(users, chats, crash > 0);
      await sleep(killAfter);
      killed = true;
      const inFlightAtKill = requests.filter((r) => !r.answers.length && !r.failures.length).length;
      await server.crash();
      writeFileSync(path.join(persistDir, `server-${crash + 1}-killed.log`), server.log());
      await running;
      const fresh = requests.slice(sentBefore);
      const answered = fresh.filter((r) => r.answers.length).length;
      const sends = fresh.filter((r) => r.kind !== "transfer").length;
      log(
        `kill ${crash + 1}/${killTimes.length}: SIGKILLed the server group after ${Date.now() - stormStarted} ms of storm: ${fresh.length} new keys sent (${fresh.length - sends} transfers, ${sends} message sends), ${answered} answered, ~${inFlightAtKill} in flight at the kill`,
      );
      const atKill = stateAtKill(persistDir);
      pendingAtKills += atKill.pending;
      pendingAtLastKill = atKill.pending;
      owedAtKills += atKill.owed;
      lastKillAt = Date.now();
      log(
        `left by the kill: ${atKill.posted} transfers posted, ${atKill.pending} debited but not yet posted; ${atKill.messages} messages in ${atKill.chats} chat objects, ${atKill.owed} of them owing D1 their summary`,
      );
      if (crash === killTimes.length - 1) {
        if (TAMPER) tamper(persistDir);
        if (TAMPER_CHAT) tamperChat(persistDir);
      }
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

    const { stats, posted, sent } = checkOutcomes(users, problems);
    const notPosted = await settleAndCheckPosted(users, posted, problems);
    await reconcile(admin, granted, problems);
    const total = await checkBalances(users, posted, problems);
    log(`balances: ${users.length} wallets hold ${total} (granted ${granted}); ${notPosted} 201s not posted`);
    await checkDirectory(users, problems);
    await server.stop();
    const books = await checkChatObjects(persistDir, users, posted, sent, problems);

    const statuses = new Map<string, number>();
    for (const request of requests) {
      for (const answer of request.answers) {
        const name = `${answer.phase} ${answer.status}`;
        statuses.set(name, (statuses.get(name) ?? 0) + 1);
      }
    }
    const kinds = (kind: Kind) => requests.filter((r) => r.kind === kind).length;
    const hotGroups = groupsSeen(posted, 0);
    const allGroups = groupsSeen(posted);
    const failures = requests.reduce((sum, r) => sum + r.failures.length, 0);
    console.log(
      [
        "",
        `crash-storm summary (seed ${SEED}, ${killTimes.length} kill(s) after ${killTimes.join(", ")} ms of storm):`,
        `  keys: ${requests.length} (${kinds("transfer")} transfers, ${kinds("v2")} v2 sends, ${kinds("v1")} v1 sends); transfer 201: ${stats.created}; refused 409: ${stats.refused}; send 201: ${stats.sent}; duplicates sent together: ${duplicatesSent}`,
        `  keys cut by a kill before any final answer: ${stats.cutByKill} (executed before the kill, reply lost, replayed after: ${stats.lostReplies}; executed only after a restart: ${stats.executedAfterRestart}); of them message sends: ${stats.sendsCutByKill} (${stats.sendsLostReplies} replayed)`,
        `  left by the kill: ${pendingAtKills} transfers debited but not posted, ${owedAtKills} chats owing D1 their summary, summed over the kills (finished after the restart by retries or the alarms)`,
        `  recovery alarm alone: ${alarmCheck}`,
        `  keys that needed more than one attempt after the restart: ${retried}; keys that saw a 5xx: ${stats.fivexx} (${stats.fivexxResolved} resolved to a final answer)`,
        `  connection failures: ${failures}; answers by phase and status: ${[...statuses].map(([k, v]) => `${k}: ${v}`).join(", ")}`,
        `  chat objects: ${books.chats} chats, ${books.messages} messages (${books.text} text, ${books.credit_transfer} credit_transfer for ${books.posted} posted transfers, ${books.voided} voided without one, ${books.system} system), ${books.keys} send outcomes stored`,
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
