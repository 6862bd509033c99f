import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import autocannon from "autocannon";
import { sign } from "hono/jwt";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { freePort } from "../test/e2e/support/server.ts";
import { meteredEntry } from "./meter.ts";
import { freshPairs, type Pair, pairKey, samplePairs } from "./pairs.ts";
import { addUnits, sumUnits, type Units } from "./pricing.ts";

/**
 * What `npm run bench` and `npm run bench:profile` share: the built Worker (wrangler deploy
 * --dry-run) and a bare Worker served by one Miniflare process (no wrangler dev proxy), the seeded
 * world (1,000 funded wallets, chats, a 1k and a 100k message chat, a 1k and a 100k ledger), the
 * scenarios, the autocannon load on 127.0.0.1 and the books check.
 */
export const ROOT = path.resolve(import.meta.dirname, "..");
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
export const BARE_SECONDS = Number(process.env.BENCH_BARE_SECONDS ?? 4);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

/**
 * Limits raised so the benchmark measures the product, not the limiter (printed with the results).
 * The coarse request budgets (wrangler.toml `[[ratelimits]]` USER_BUDGET / ADDRESS_BUDGET: a
 * binding's limit is not a var) are switched off by their var instead: all load comes from one
 * address, and in Miniflare the binding is an object round trip that Cloudflare's in-colo
 * counter is not. scripts/crash-storm.ts serves with these vars too.
 */
export const BENCH_VARS: Record<string, string> = {
  RATE_LIMIT_BUDGETS: "off",
  RATE_LIMIT_LOGIN_PER_MINUTE: "1000000000",
  RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: "1000000000",
  RATE_LIMIT_AUTH_IP_PER_MINUTE: "1000000000",
  RATE_LIMIT_MESSAGES_PER_MINUTE: "1000000000",
  RATE_LIMIT_TRANSFERS_PER_MINUTE: "1000000000",
  DAILY_TRANSFER_LIMIT: "1000000000000",
  SIGNUP_CREDITS: "0",
  ADMIN_EMAILS: "bench-admin@bench.example.com",
};
const LOCAL_JWT_SECRET = "local-development-only-insecure-jwt-secret-do-not-deploy";

export type D1 = Awaited<ReturnType<Miniflare["getD1Database"]>>;
type D1Statement = ReturnType<D1["prepare"]>;

function sh(command: string, args: string[], cwd = ROOT) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`, CI: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.stderr.on("data", (chunk) => (out += chunk));
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")}: exit ${code}\n${out}`)),
    );
  });
}

/** The production bundle of the top-level (local) config, as `wrangler deploy` would upload it. */
/** `root`: another checkout of the project (bench/ab.ts builds older commits), with node_modules. */
export async function build(outdir: string, root = ROOT) {
  await sh(path.join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", outdir], root);
  return readdirSync(outdir)
    .filter((name) => !name.endsWith(".map") && name !== "README.md")
    .map((name) => ({
      type: name === "index.js" ? ("ESModule" as const) : ("Text" as const),
      path: path.join(outdir, name),
      contents: readFileSync(path.join(outdir, name), name === "index.js" ? undefined : "utf8"),
    }))
    .sort((a, b) => (a.type === "ESModule" ? -1 : b.type === "ESModule" ? 1 : 0));
}

export function tomlVars(): Record<string, string> {
  // The [vars] table at the top level of wrangler.toml (local): KEY = "value" lines until the next table.
  const toml = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const section = toml.split(/^\[vars\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  return Object.fromEntries([...section.matchAll(/^([A-Z_]+)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1], m[2]]));
}

/** The app worker's name in Miniflare (the inspector lists isolates by it). */
export const APP_WORKER = "credit-chat";
/** Where the bare Worker answers, on any host, through the same Miniflare entry as the app. */
export const BARE_PATH = "/__bare";

const compatibilityDate = () =>
  readFileSync(path.join(ROOT, "wrangler.toml"), "utf8").match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1];

/**
 * The top-level (local) `[[durable_objects.bindings]]` and `[[workflows]]` of `root`'s
 * wrangler.toml: binding → class. Read from the checkout being served, so bench/ab.ts can serve an
 * older commit with the objects it had (before chat objects there was no CHAT, no CHAT_FACTS).
 */
export function tomlClasses(root = ROOT) {
  const toml = readFileSync(path.join(root, "wrangler.toml"), "utf8");
  // The top level ends where the first environment begins.
  const top = toml.split(/^\[env\./m)[0] ?? "";
  const tables = (header: string) =>
    top
      .split(/^\[\[/m)
      .filter((table) => table.startsWith(`${header}]]`))
      .map((table) => Object.fromEntries([...table.matchAll(/^([a-z_]+)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1], m[2]])));
  const objects = Object.fromEntries(tables("durable_objects.bindings").map((t) => [t.name as string, t.class_name as string]));
  const workflows = Object.fromEntries(tables("workflows").map((t) => [t.binding as string, t.class_name as string]));
  return { objects, workflows };
}

/**
 * A built product bundle as one worker of a Miniflare process: the local vars raised as above, its
 * own D1, and the objects and Workflows its wrangler.toml (at `root`) binds: every object
 * SQLite-backed, as its `[[migrations]]` declare them.
 */
export function appWorker(
  name: string,
  modules: Awaited<ReturnType<typeof build>>,
  outdir: string,
  database: string,
  root = ROOT,
  meter = false,
) {
  const { objects, workflows } = tomlClasses(root);
  const main = modules[0];
  return {
    name,
    // `meter`: bench/units.js's entry in front of the bundle, which itself is served unchanged.
    modules:
      meter && main
        ? [...meteredEntry(outdir, path.basename(main.path), objects, Object.values(workflows)), ...modules]
        : modules,
    modulesRoot: outdir,
    compatibilityDate: compatibilityDate(),
    compatibilityFlags: ["nodejs_compat"],
    bindings: { ...tomlVars(), ...BENCH_VARS },
    d1Databases: { DB: database },
    durableObjects: Object.fromEntries(
      Object.entries(objects).map(([binding, className]) => [binding, { className, useSQLite: true }]),
    ),
    // The reconciliation the correctness check reads runs as a Workflow (wrangler.toml), as do the chat facts.
    workflows: Object.fromEntries(
      Object.entries(workflows).map(([binding, className]) => [
        binding,
        { name: `${name}-${binding.toLowerCase().replaceAll("_", "-")}`, className },
      ]),
    ),
  };
}

/** bench/bare-worker.js on BARE_PATH: the denominator of every ratio. */
export function bareWorker() {
  return {
    name: "bench-bare",
    modules: true,
    scriptPath: path.join(ROOT, "bench/bare-worker.js"),
    compatibilityDate: compatibilityDate(),
    routes: [`*${BARE_PATH}`],
  };
}

/** Where bench/bare-d1-worker.js answers: the bare Worker plus the one D1 round trip a D1 route cannot avoid. */
export const BARE_D1_PATH = "/__bare-d1";

/** A floor probe: `bench/<name>-worker.js` answering under `routePath`, on the product's D1 database `database` (if any). */
function probeWorker(
  name: string,
  routePath: string,
  database: string | undefined,
  durableObjects: Record<string, { className: string; scriptName?: string; useSQLite?: boolean }> = {},
) {
  const file = `${name}-worker.js`;
  // Its own classes (not another worker's, bound by scriptName) are metered where they run.
  const own = Object.fromEntries(
    Object.entries(durableObjects).map(([binding, o]) => [binding, o.scriptName ? "" : o.className]),
  );
  const dir = path.join(ROOT, "bench");
  return {
    name: `bench-${name}`,
    modules: [
      ...meteredEntry(dir, file, own, []),
      { type: "ESModule" as const, path: path.join(dir, file), contents: readFileSync(path.join(dir, file), "utf8") },
    ],
    modulesRoot: dir,
    compatibilityDate: compatibilityDate(),
    // The meter tells work behind the answers by an AsyncLocalStorage (bench/units.js).
    compatibilityFlags: ["nodejs_als"],
    d1Databases: (database === undefined ? {} : { DB: database }) as Record<string, string>,
    durableObjects,
    routes: [`*${routePath}/*`],
  };
}

/** bench/bare-d1-worker.js on BARE_D1_PATH: the floor of the D1 paths (probes). */
export const bareD1Worker = (database: string) => probeWorker("bare-d1", BARE_D1_PATH, database);

/** Where bench/bare-chat-worker.js answers: a bare Worker calling a bare chat object (append, newest page). */
export const BARE_CHAT_PATH = "/__bare-chat";
const BARE_CHAT_WORKER = "bench-bare-chat";
/** The bare chats (names of bench/bare-chat-worker.js's objects): one appended to, one of 100k messages read. */
const BARE_CHAT_APPEND = "bench-bare-append";
const BARE_CHAT_READ = "bench-bare-read-100k";

/** bench/bare-chat-worker.js on BARE_CHAT_PATH, with its own chat objects: the floor of the chat paths (probes). */
export const bareChatWorker = () =>
  probeWorker("bare-chat", BARE_CHAT_PATH, undefined, { BARE_CHAT: { className: "BareChat", useSQLite: true } });

/** Where bench/bare-transfer-worker.js answers: a transfer's work (debit, credit, message, posted) with nothing else. */
export const BARE_TRANSFER_PATH = "/__bare-transfer";

/**
 * bench/bare-transfer-worker.js on BARE_TRANSFER_PATH, with its own wallet objects; a transfer's
 * message goes to bench/bare-chat-worker.js's chat objects (another worker's class, by
 * `scriptName`): the floor of the transfers (probes).
 */
export const bareTransferWorker = (database: string) =>
  probeWorker("bare-transfer", BARE_TRANSFER_PATH, database, {
    BARE_WALLET: { className: "BareWallet", useSQLite: true },
    BARE_CHAT: { className: "BareChat", scriptName: BARE_CHAT_WORKER, useSQLite: true },
  });

/**
 * One Miniflare process: the product bundle, bench/bare-worker.js routed on BARE_PATH (the
 * denominator of every ratio), and the floor probes (D1, chat object, transfer). `inspectorPort`
 * opens the V8 inspector (profiling).
 */
export async function startMiniflare(
  modules: Awaited<ReturnType<typeof build>>,
  outdir: string,
  persist: string,
  port: number,
  inspectorPort?: number,
) {
  // miniflare 5 (the one wrangler runs) still takes the v4 option shape through this converter.
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port,
      ...(inspectorPort ? { inspectorPort } : {}),
      resourcePersistencePath: persist,
      workers: [
        appWorker(APP_WORKER, modules, outdir, "bench-db", ROOT, true),
        bareWorker(),
        bareD1Worker("bench-db"),
        bareChatWorker(),
        bareTransferWorker("bench-db"),
      ],
    }),
  );
  const url = await mf.ready;
  return { mf, url: url.origin };
}

export async function migrate(db: D1) {
  const dir = path.join(ROOT, "migrations");
  for (const file of readdirSync(dir)
    .filter((name) => name.endsWith(".sql"))
    .sort()) {
    const statements = readFileSync(path.join(dir, file), "utf8")
      .split("--> statement-breakpoint")
      .map((s) => s.trim())
      .filter(Boolean);
    await db.batch(statements.map((s) => db.prepare(s)));
  }
}

// ------------------------------------------------------------------ seeding

let idCounter = 0;
/** ObjectId-style ids for rows the benchmark inserts itself. */
function benchId(): string {
  idCounter += 1;
  return `${Math.floor(Date.now() / 1000)
    .toString(16)
    .padStart(8, "0")}be9c${idCounter.toString(16).padStart(12, "0")}`;
}

export type BenchUser = { id: string; token: string };

/** An access token as `signAccessToken` (src/lib/jwt.ts) makes it: HS256 through an `oct` JWK, so its header names the key's `kid`. */
async function tokenFor(id: string, role: "user" | "admin") {
  const iat = Math.floor(Date.now() / 1000);
  const kid = createHash("sha256").update(`credit-chat-jwt-kid:${LOCAL_JWT_SECRET}`).digest("hex").slice(0, 16);
  return sign(
    { sub: id, role, sid: benchId(), iat, exp: iat + 3600, iss: "credit-chat", aud: "credit-chat-api:local", jti: benchId() },
    { kty: "oct", k: Buffer.from(LOCAL_JWT_SECRET).toString("base64url"), alg: "HS256", kid },
  );
}

/** Users inserted straight into D1 (registration hashes a password per user: too slow for 1,000). */
export async function seedUsers(db: D1, count: number, label: string, role: "user" | "admin" = "user"): Promise<BenchUser[]> {
  const users: BenchUser[] = [];
  const now = Date.now();
  for (let start = 0; start < count; start += 500) {
    const batch: D1Statement[] = [];
    for (let i = start; i < Math.min(count, start + 500); i++) {
      const id = benchId();
      const name = `${label} ${i}`;
      batch.push(
        db
          .prepare(
            "INSERT INTO users (id, email, display_name, display_name_key, password_hash, role, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
          )
          .bind(id, `${label}-${i}@bench.example.com`, name, name.toLowerCase(), "bench-no-password", role, now),
      );
      users.push({ id, token: await tokenFor(id, role) });
    }
    await db.batch(batch);
  }
  return users;
}

export type Api = (method: string, pathname: string, token: string, body?: unknown) => Promise<{ status: number; json: any }>;

export function apiAt(base: string): Api {
  return async (method, pathname, token, body) => {
    const res = await fetch(`${base}${pathname}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
}

export async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

async function expectStatus(res: Promise<{ status: number; json: any }>, status: number[], what: string) {
  const r = await res;
  if (!status.includes(r.status)) throw new Error(`seeding ${what}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.json;
}

// ------------------------------------------------------------------ load

let keyCounter = 0;

export type Load = {
  path: string;
  method?: "GET" | "POST";
  /** Per-request token/body: called for every request autocannon sends. */
  next?: () => { token?: string; body?: unknown; path?: string };
  token?: string;
  /** Which Worker of the Miniflare process answers, by name (bench/ab.ts); else its routes decide. */
  worker?: string;
  /** A fresh `Idempotency-Key` on every request, as a real client sends on money moves and sends. */
  idempotencyKey?: boolean;
  connections?: number;
  seconds?: number;
};

export async function load(base: string, spec: Load) {
  const method = spec.method ?? "GET";
  const result = await autocannon({
    url: base,
    connections: spec.connections ?? CONNECTIONS,
    duration: spec.seconds ?? SECONDS,
    timeout: 10,
    requests: [
      {
        method,
        path: spec.path,
        setupRequest: (request) => {
          const next = spec.next?.() ?? {};
          const token = next.token ?? spec.token;
          const headers: Record<string, string> = { ...(request.headers as Record<string, string>) };
          if (token) headers.authorization = `Bearer ${token}`;
          // Miniflare's entry router reads (and strips) this header before its routes.
          if (spec.worker) headers["mf-route-override"] = spec.worker;
          if (spec.idempotencyKey) headers["idempotency-key"] = `bench-${process.pid}-${++keyCounter}`;
          if (next.body !== undefined) headers["content-type"] = "application/json";
          return {
            ...request,
            path: next.path ?? spec.path,
            headers,
            body: next.body === undefined ? undefined : JSON.stringify(next.body),
          };
        },
      },
    ],
  });
  return {
    requests: result.requests.total,
    rps: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

/**
 * CPU ms so far of workerd's main thread (every isolate, the runtime and its sockets run there),
 * from /proc (Linux). Miniflare does not expose the pid: the process is the workerd whose
 * command line serves this port.
 */
export function workerdThreadCpuMs(port: string): number | undefined {
  try {
    for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
      let cmdline = "";
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (!cmdline.includes("workerd") || !cmdline.includes(`127.0.0.1:${port}`)) continue;
      // utime and stime are the 12th and 13th fields after the ")" that ends the thread's name.
      const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

// ------------------------------------------------------------------ invariants

/**
 * The books after a run, in two parts. Through the API while Miniflare serves: reconciliation
 * clean (money conserved, no discrepancy) and no negative wallet. Then `world.stop()` (Miniflare
 * disposed, its files kept) and the files themselves: every chat's `seq` runs 1..lastSeq without
 * gaps or repeats, read from each chat object's SQLite file; and the D1 index caught up with every
 * chat object once the load is over (`chats.last_seq`, `chat_members` = the object's members,
 * nothing owed), with no directory row that no object holds (checkChatFiles).
 */
export async function checkInvariants(world: Pick<World, "api" | "admin" | "users" | "stop" | "persist" | "chatClass">) {
  const { api, admin, users } = world;
  const problems: string[] = [];
  {
    // Transfers still finishing (alarms) show as pending/in flight: give them a few seconds.
    let rec = await api("GET", "/api/v1/admin/reconciliation", admin.token);
    for (let attempt = 0; attempt < 5 && rec.status === 200 && rec.json.data.pendingTransfers > 0; attempt++) {
      await sleep(2_000);
      rec = await api("GET", "/api/v1/admin/reconciliation", admin.token);
    }
    const data = rec.json?.data;
    if (rec.status !== 200) problems.push(`reconciliation answered ${rec.status}: ${JSON.stringify(rec.json).slice(0, 300)}`);
    else {
      const { discrepancies, ...totals } = data;
      console.log(`invariants: reconciliation ${JSON.stringify(totals)}, ${discrepancies.length} discrepancies`);
      if (data.totalBalance !== data.totalGranted) {
        problems.push(
          `money not conserved: balances ${data.totalBalance} vs granted ${data.totalGranted} (${data.pendingTransfers} pending)`,
        );
      }
      if (discrepancies.length) problems.push(`discrepancies: ${JSON.stringify(discrepancies).slice(0, 800)}`);
    }
  }

  {
    let negative = 0;
    await inParallel(users, 16, async (user) => {
      const res = await api("GET", "/api/v1/wallets/me", user.token);
      if (res.status === 200 && res.json.data.balance < 0) negative++;
    });
    if (negative) problems.push(`${negative} negative balances`);
    console.log(`invariants: ${users.length} wallets read, ${negative} negative`);
  }

  // The chat objects write the directory up to SUMMARY_FLUSH_MS (250 ms) behind their answers.
  await sleep(1_500);
  await world.stop();
  problems.push(...checkChatFiles(world.persist, world.chatClass));
  return problems;
}

type ChatFileRow = {
  chat_id: string;
  last_seq: number;
  flushed_seq: number;
  summary_version: number;
  flushed_version: number;
  /** The membership's version and what the directory and the users' objects acknowledged (chat-first membership). */
  index_version?: number;
  flushed_index_version?: number;
  told_index_version?: number;
};

/**
 * Every chat's seq from the stopped Miniflare's files (node:sqlite): each chat object's own
 * SQLite file (`<persist>/do/<worker>-<class>/<id>.sqlite`) holds seq 1..last_seq, and D1's
 * index follows it: the chat's directory row says the same last seq, its `chat_members` rows are
 * the object's members, and the object owes nothing (summary, read markers, membership to the
 * directory and to the users' objects). The chat object owns the chat (ARCHITECTURE.md §11): a
 * directory row that no object holds is a violation too.
 */
export function checkChatFiles(persist: string, chatClass: string): string[] {
  const problems: string[] = [];
  const d1File = sqliteFiles(path.join(persist, "d1"))[0];
  if (!d1File) return [`no D1 database file under ${persist}/d1`];
  const d1 = new DatabaseSync(d1File, { readOnly: true });
  let objects = 0;
  let objectMessages = 0;
  try {
    const directory = new Map(
      (d1.prepare("SELECT id, last_seq FROM chats").all() as { id: string; last_seq: number }[]).map((c) => [c.id, c.last_seq]),
    );
    const indexedMembers = new Map<string, Set<string>>();
    for (const row of d1.prepare("SELECT chat_id, user_id FROM chat_members").all() as { chat_id: string; user_id: string }[]) {
      let set = indexedMembers.get(row.chat_id);
      if (!set) indexedMembers.set(row.chat_id, (set = new Set()));
      set.add(row.user_id);
    }
    const held = new Set<string>();
    const dir = path.join(persist, "do", `${APP_WORKER}-${chatClass}`);
    for (const file of existsSync(dir) ? sqliteFiles(dir) : []) {
      const sqlite = new DatabaseSync(file, { readOnly: true });
      try {
        const hasChat = sqlite.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'chat'").get() as { n: number };
        const chat = hasChat.n ? (sqlite.prepare("SELECT * FROM chat WHERE id = 1").get() as ChatFileRow | undefined) : undefined;
        if (!chat) continue; // an object asked about a chat it does not hold: it stores nothing
        objects++;
        objectMessages += chat.last_seq;
        held.add(chat.chat_id);
        const count = (where: string, ...params: number[]) =>
          (sqlite.prepare(`SELECT COUNT(*) AS n FROM messages WHERE ${where}`).get(...params) as { n: number }).n;
        const stored = count("seq BETWEEN 1 AND ?", chat.last_seq);
        const beyond = count("seq > ?", chat.last_seq);
        if (stored !== chat.last_seq || beyond > 0) {
          problems.push(`chat seq not contiguous (object): ${JSON.stringify({ ...chat, stored, beyond })}`);
        }
        const listed = directory.get(chat.chat_id);
        const markersOwed = (
          sqlite.prepare("SELECT COUNT(*) AS n FROM members WHERE flushed_read_seq <> last_read_seq").get() as { n: number }
        ).n;
        const indexOwed = (chat.index_version ?? 0) - (chat.flushed_index_version ?? 0);
        const usersOwed = (chat.index_version ?? 0) - (chat.told_index_version ?? chat.index_version ?? 0);
        const members = (sqlite.prepare("SELECT user_id FROM members").all() as { user_id: string }[]).map((m) => m.user_id);
        const indexed = indexedMembers.get(chat.chat_id) ?? new Set<string>();
        const membersDiffer = members.length !== indexed.size || members.some((m) => !indexed.has(m));
        if (
          listed !== chat.last_seq ||
          chat.flushed_seq !== chat.last_seq ||
          chat.flushed_version !== chat.summary_version ||
          markersOwed > 0 ||
          indexOwed > 0 ||
          usersOwed > 0 ||
          membersDiffer
        ) {
          problems.push(
            `directory behind its chat object after the load: ${JSON.stringify({ chatId: chat.chat_id, lastSeq: chat.last_seq, directoryLastSeq: listed ?? null, flushedSeq: chat.flushed_seq, versionOwed: chat.summary_version - chat.flushed_version, markersOwed, indexOwed, usersOwed, members: members.length, indexedMembers: indexed.size, membersDiffer })}`,
          );
        }
      } finally {
        sqlite.close();
      }
    }
    // The directory is an index of the chat objects: a row no object holds has no owner.
    for (const [id, lastSeq] of directory) {
      if (!held.has(id)) problems.push(`chat ${id}: in the D1 directory (last_seq ${lastSeq}) but no chat object holds it`);
    }
    const total = (d1.prepare("SELECT COALESCE(SUM(last_seq), 0) AS n FROM chats").get() as { n: number }).n;
    console.log(
      `invariants: ${directory.size} chats in the directory, ${objects} in chat objects (holding ${objectMessages} messages; directory total ${total}), ${problems.length} seq or directory problems`,
    );
  } finally {
    d1.close();
  }
  return problems;
}

/** The SQLite files under `dir` (recursively), Miniflare's own metadata left out. */
function sqliteFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sqliteFiles(full);
    return entry.name.endsWith(".sqlite") && entry.name !== "metadata.sqlite" ? [full] : [];
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function findFile(dir: string, name: string): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = findFile(full, name);
      if (found) return found;
    } else if (entry.name === name) return full;
  }
  return undefined;
}

/**
 * `count - 1` more grant entries (1 credit each, balanceAfter chained, with their grant rows) in the
 * SQLite file of a stopped wallet object that already holds one grant: 100k API grants would take
 * minutes. Its running totals (`wallet_totals`) count them too, so reconciliation still balances.
 */
function seedLedger(persist: string, walletId: string, count: number) {
  const file = findFile(persist, `${walletId}.sqlite`);
  if (!file) throw new Error(`no SQLite file for wallet object ${walletId} under ${persist}`);
  const sqlite = new DatabaseSync(file);
  try {
    const wallet = sqlite.prepare("SELECT balance FROM wallet WHERE id = 1").get() as { balance: number } | undefined;
    if (!wallet) throw new Error("the wallet to seed is not open");
    const now = Date.now();
    const prefix = Math.floor(now / 1000)
      .toString(16)
      .padStart(8, "0");
    sqlite.exec("BEGIN");
    const insertGrant = sqlite.prepare(
      "INSERT INTO grants (grant_id, granted_by, amount, reason, balance_after, created_at) VALUES (?, 'bench', 1, 'bench ledger', ?, ?)",
    );
    const insertEntry = sqlite.prepare(
      "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, message_id, note, created_at) VALUES (?, ?, 'grant', 1, ?, NULL, NULL, 'bench ledger', ?)",
    );
    let balance = wallet.balance;
    for (let i = 1; i < count; i++) {
      balance += 1;
      const grantId = `${prefix}bea0${i.toString(16).padStart(12, "0")}`;
      const entryId = `${prefix}bea1${i.toString(16).padStart(12, "0")}`;
      insertGrant.run(grantId, balance, now - (count - i));
      insertEntry.run(entryId, grantId, balance, now - (count - i));
    }
    sqlite.prepare("UPDATE wallet SET balance = ?, updated_at = ? WHERE id = 1").run(balance, now);
    sqlite
      .prepare("UPDATE wallet_totals SET granted = granted + ?, granted_count = granted_count + ? WHERE id = 1")
      .run(count - 1, count - 1);
    sqlite.exec("COMMIT");
  } finally {
    sqlite.close();
  }
}

/**
 * Seqs 2..`count` of a chat whose object holds its first message, written into that object's own
 * SQLite file while Miniflare is stopped (100k sends through the API would take minutes): text
 * messages from `senders` in turn, with ids as the object gives them (durable-objects/chat/
 * append.ts, `messageIdOf`), and the chat row moved to the last seq as if flushed. Returns the
 * directory summary to write into D1 once Miniflare serves again.
 */
function seedChatHistory(persist: string, chatClass: string, chatId: string, count: number, senders: readonly string[]) {
  const dir = path.join(persist, "do", `${APP_WORKER}-${chatClass}`);
  for (const file of sqliteFiles(dir)) {
    const sqlite = new DatabaseSync(file);
    try {
      const hasChat = sqlite.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'chat'").get() as { n: number };
      const chat = hasChat.n
        ? (sqlite.prepare("SELECT chat_id, route_tag, last_seq, flushed_seq FROM chat WHERE id = 1").get() as
            | { chat_id: string; route_tag: string; last_seq: number; flushed_seq: number }
            | undefined)
        : undefined;
      if (chat?.chat_id !== chatId) continue;
      if (chat.last_seq !== 1 || chat.flushed_seq !== 1) throw new Error(`chat ${chatId} to seed: ${JSON.stringify(chat)}`);
      const now = Date.now();
      const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
      const insert = sqlite.prepare(
        "INSERT INTO messages (seq, id, sender_id, type, content, created_at) VALUES (?, ?, ?, 'text', ?, ?)",
      );
      let last = { id: "", senderId: "", content: "", createdAt: 0 };
      sqlite.exec("BEGIN");
      for (let seq = 2; seq <= count; seq++) {
        const createdAt = now - (count - seq);
        const id = hex(Math.floor(createdAt / 1000) >>> 0, 8) + chat.route_tag + hex(seq & 0xffff, 4);
        last = { id, senderId: senders[seq % senders.length] as string, content: `seeded message ${seq}`, createdAt };
        insert.run(seq, id, last.senderId, last.content, createdAt);
      }
      sqlite.prepare("UPDATE chat SET last_seq = ?, flushed_seq = ?, last_activity_at = ? WHERE id = 1").run(count, count, now);
      sqlite.exec("COMMIT");
      const at = new Date(last.createdAt).toISOString();
      const lastMessage = JSON.stringify({
        id: last.id,
        chatId,
        seq: count,
        senderId: last.senderId,
        type: "text",
        content: last.content,
        replyToMessageId: null,
        clientMessageId: null,
        creditTransfer: null,
        createdAt: at,
        editedAt: null,
        deletedAt: null,
      });
      return { chatId, lastSeq: count, lastMessage, lastActivityAt: now };
    } finally {
      sqlite.close();
    }
  }
  throw new Error(`no chat object file holds chat ${chatId} under ${dir}`);
}

/**
 * Direct chats of the pairs `[a, b]` (the first one opens it), made as the product makes them:
 * `POST /api/v1/chats {type: "direct", memberId}`, which the pair's chat object decides (its id
 * derived from the two user ids, lib/direct-chat.ts) and whose outbox then writes the D1 index
 * (`chats`, `chat_members`). `width` requests at a time. Returns each chat's id, in the order of
 * `pairs`.
 */
export async function seedDirectChats(
  api: Api,
  pairs: readonly (readonly [BenchUser, BenchUser])[],
  width = 16,
): Promise<string[]> {
  const ids: string[] = new Array(pairs.length);
  await inParallel(
    pairs.map((pair, i) => [pair, i] as const),
    width,
    async ([[a, b], i]) => {
      const json = await expectStatus(
        api("POST", "/api/v1/chats", a.token, { type: "direct", memberId: b.id }),
        [200, 201],
        "chat",
      );
      ids[i] = json.data.id as string;
    },
  );
  return ids;
}

/**
 * Where each metered worker answers its meter (bench/units.js): the product (Miniflare's
 * fallback worker) and the floor probes. The bare Worker, the denominator of every ratio, is not
 * metered: its run's last requests may still land while the next scenario is being counted.
 */
export const METERED_PREFIXES = ["", BARE_D1_PATH, BARE_CHAT_PATH, BARE_TRANSFER_PATH];

/** Every metered worker's totals so far, summed (bench/units.js). */
export async function readUnits(base: string): Promise<Units> {
  const all = await Promise.all(
    METERED_PREFIXES.map(async (prefix) => {
      const res = await fetch(`${base}${prefix}/__bench/units`);
      if (res.status !== 200) throw new Error(`reading the meter at ${prefix || "/"}: ${res.status}`);
      return (await res.json()) as Units;
    }),
  );
  return sumUnits(all);
}

/** The product's request-path D1 statements so far, by SQL text (bench/units.js `D1_SQL_PATH`: a debug listing). */
export async function readD1Sql(base: string): Promise<Record<string, number>> {
  const res = await fetch(`${base}/__bench/d1-sql`);
  if (res.status !== 200) throw new Error(`reading the D1 statements: ${res.status}`);
  return (await res.json()) as Record<string, number>;
}

/**
 * The billable units used while `during` runs, in every metered worker: read before, and
 * `settleMs` after it ends, so what its requests leave behind them (the chat objects' directory
 * writes, up to 250 ms later; alarms; requests still in flight when the load stops) is counted
 * with them. Its `workerRequests` are the requests the scenario made.
 */
export async function countUnits<T>(base: string, during: () => Promise<T>, settleMs = 1_000) {
  const before = await readUnits(base);
  const result = await during();
  await sleep(settleMs);
  return { result, units: addUnits(await readUnits(base), before, -1) };
}

/** The name of the table counting D1's rows written while `countD1RowsWritten` runs. */
const ROWS_WRITTEN_TABLE = "bench_rows_written";

/**
 * The rows D1 writes while `during` runs: one per row inserted, updated or deleted in any table,
 * counted by temporary triggers (AFTER INSERT/UPDATE/DELETE on every table, each bumping that
 * table's counter in a scratch table), installed through Miniflare's D1 binding and removed afterwards. It first
 * waits `settleMs` so writes owed by earlier load land uncounted (chat objects write the directory
 * up to 250 ms behind their answers, coalesced), and waits as long again after `during` so its own
 * land counted. Rows changed, not D1's billed figure: D1 also bills one row per index a write touches.
 */
export async function countD1RowsWritten<T>(db: D1, during: () => Promise<T>, settleMs = 1_000) {
  await sleep(settleMs);
  const listed = await db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
    .all<{ name: string }>();
  const tables: string[] = listed.results
    .map((row: { name: string }) => row.name)
    .filter((name: string) => name !== ROWS_WRITTEN_TABLE);
  const triggers: { name: string; table: string; op: string }[] = tables.flatMap((table) =>
    ["INSERT", "UPDATE", "DELETE"].map((op) => ({ name: `bench_rows_${op.toLowerCase()}_${table}`, table, op })),
  );
  await db.batch([
    db.prepare(`CREATE TABLE IF NOT EXISTS ${ROWS_WRITTEN_TABLE} (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL)`),
    db.prepare(`DELETE FROM ${ROWS_WRITTEN_TABLE}`),
    ...tables.map((table) => db.prepare(`INSERT INTO ${ROWS_WRITTEN_TABLE} (tbl, n) VALUES (?, 0)`).bind(table)),
    ...triggers.map((t) =>
      db.prepare(
        `CREATE TRIGGER "${t.name}" AFTER ${t.op} ON "${t.table}" BEGIN UPDATE ${ROWS_WRITTEN_TABLE} SET n = n + 1 WHERE tbl = '${t.table}'; END`,
      ),
    ),
  ]);
  try {
    const result = await during();
    await sleep(settleMs);
    const counted = await db
      .prepare(`SELECT tbl, n FROM ${ROWS_WRITTEN_TABLE} WHERE n > 0 ORDER BY n DESC, tbl`)
      .all<{ tbl: string; n: number }>();
    const byTable: Record<string, number> = Object.fromEntries(
      counted.results.map((row: { tbl: string; n: number }) => [row.tbl, row.n]),
    );
    return { result, rowsWritten: Object.values(byTable).reduce((sum, n) => sum + n, 0), byTable };
  } finally {
    await db.batch([
      ...triggers.map((t) => db.prepare(`DROP TRIGGER IF EXISTS "${t.name}"`)),
      db.prepare(`DROP TABLE IF EXISTS ${ROWS_WRITTEN_TABLE}`),
    ]);
  }
}

// ------------------------------------------------------------------ the world

export type World = {
  mf: Miniflare;
  base: string;
  db: D1;
  api: Api;
  admin: BenchUser;
  /** Every wallet the books check reads. */
  users: BenchUser[];
  scenarios: Scenario[];
  /** The bundle's source map (wrangler writes one beside index.js), for attributing profiles. */
  sourceMap: string | undefined;
  /** Miniflare's persist directory: the books check reads the chat objects' files there after `stop`. */
  persist: string;
  /** The product's chat object class (wrangler.toml's CHAT binding), whose files hold the chats. */
  chatClass: string;
  /** Disposes Miniflare and keeps its files (the books check reads them). */
  stop(): Promise<void>;
  /** Disposes Miniflare if it still runs, and removes the build and the files. */
  dispose(): Promise<void>;
};

export type Scenario = {
  name: string;
  load: Load;
  /** Count D1's rows written during this scenario (countD1RowsWritten), reported per request answered. */
  countD1Writes?: boolean;
};

/**
 * How many pairs of people already talk (a direct chat created before the load) in
 * `transfer-random-pairs` and its floor. `BENCH_RANDOM_PAIRS` lowers it for a quick check on a busy
 * machine (each chat is made through the API, its object first: bench/README.md "Seeding").
 */
export const RANDOM_PAIRS = Number(process.env.BENCH_RANDOM_PAIRS ?? 10_000);

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(0)} s`;

/** Builds, serves and seeds; the caller disposes. `inspectorPort` opens the V8 inspector. */
export async function createWorld(options: { inspectorPort?: number } = {}): Promise<World> {
  const started = Date.now();
  const outdir = mkdtempSync(path.join(tmpdir(), "credit-chat-bench-build-"));
  // Where Miniflare keeps D1 and every object's SQLite file: each commit there is a local SQLite
  // commit, so the disk under it is part of every write path's figure (bench/README.md).
  const persist = mkdtempSync(path.join(process.env.BENCH_STATE_DIR ?? tmpdir(), "credit-chat-bench-state-"));
  let mf: Miniflare | undefined;
  const stop = async () => {
    const running = mf;
    mf = undefined;
    await running?.dispose();
  };
  const cleanup = async () => {
    await stop();
    rmSync(outdir, { recursive: true, force: true });
    rmSync(persist, { recursive: true, force: true });
  };
  try {
    console.log("bench: building the Worker (wrangler deploy --dry-run) …");
    const modules = await build(outdir);
    const port = await freePort();
    let server = await startMiniflare(modules, outdir, persist, port);
    mf = server.mf;
    let db = await mf.getD1Database("DB");
    await migrate(db);
    let api = apiAt(server.url);
    console.log(
      `bench: Miniflare serving the built Worker at ${server.url} (bare Worker at ${BARE_PATH}); vars raised for the run: ${JSON.stringify(BENCH_VARS)}`,
    );
    // ---- seed: an admin, 1,000 funded wallets (people[0] is the hot sender), ledger readers, chats
    const [admin] = await seedUsers(db, 1, "bench-admin", "admin");
    if (!admin) throw new Error("no admin");
    // The role is its owner's, the user's object (the admin check asks only it, never D1's row):
    // opened there as an admin, as registration opens an account.
    const owners = (await mf.getDurableObjectNamespace("WALLET")) as unknown as {
      idFromName(name: string): unknown;
      get(id: unknown): { openAccount(userId: string, initial: { role: "admin"; status: "active" }): Promise<unknown> };
    };
    await owners.get(owners.idFromName(admin.id)).openAccount(admin.id, { role: "admin", status: "active" });
    const people = await seedUsers(db, 1000, "bench-user");
    const [reader1k, reader100k] = await seedUsers(db, 2, "bench-ledger");
    if (!reader1k || !reader100k) throw new Error("no ledger readers");
    const hot = people[0] as BenchUser;
    const grant = (user: BenchUser, amount: number) =>
      expectStatus(
        api("POST", `/api/v1/admin/wallets/${user.id}/grants`, admin.token, { amount, reason: "bench seed" }),
        [201],
        "grant",
      );
    await inParallel(people, 16, (user) => grant(user, user === hot ? 50_000_000 : 1_000_000));
    await inParallel(
      Array.from({ length: 1000 }, () => reader1k),
      16,
      (user) => grant(user, 1),
    );
    await grant(reader100k, 1);
    // The floor's bare wallets (bench/bare-transfer-worker.js) are created now too, like the
    // product's by their grants: otherwise the probes alone would pay for creating 1,000 objects' storage.
    await inParallel(people, 16, async (user) => {
      const res = await fetch(`${server.url}${BARE_TRANSFER_PATH}/open?user=${user.id}`, { method: "POST" });
      if (res.status !== 200) throw new Error(`seeding a bare wallet: ${res.status} ${await res.text()}`);
    });
    // The chat floor's objects (bench/bare-chat-worker.js), created before the load like the
    // product's: an empty chat to append to, and one of 100k messages to read (the larger of the
    // product's two: a page is a walk down the seq key, so a floor of 100k is never flattered).
    for (const [chat, count] of [
      [BARE_CHAT_APPEND, 0],
      [BARE_CHAT_READ, 100_000],
    ] as const) {
      const res = await fetch(`${server.url}${BARE_CHAT_PATH}/fill?chat=${chat}&sender=${hot.id}&count=${count}`, {
        method: "POST",
      });
      if (res.status !== 200) throw new Error(`seeding a bare chat: ${res.status} ${await res.text()}`);
    }
    console.log(
      `bench: ${people.length} wallets funded (and their bare wallets created), ledger of 1k entries granted through the API, the bare chats created (${seconds(started)})`,
    );

    const chatIds: string[] = [];
    await inParallel(people.slice(1, 101), 8, async (other) => {
      const json = await expectStatus(
        api("POST", "/api/v1/chats", hot.token, { type: "direct", memberId: other.id }),
        [200, 201],
        "chat",
      );
      chatIds.push(json.data.id);
    });
    // The 1k and 100k message chats: created through the API with their first message (so each
    // chat's object exists as the product makes it); the rest of their history is written into the
    // objects' own SQLite files while Miniflare is stopped (below, with the 100k ledger).
    const bigChats: Record<number, string> = {};
    for (const [size, other] of [
      [1_000, people[201] as BenchUser],
      [100_000, people[202] as BenchUser],
    ] as const) {
      const created = await expectStatus(
        api("POST", "/api/v1/chats", hot.token, { type: "direct", memberId: other.id }),
        [200, 201],
        "big chat",
      );
      const chatId = created.data.id as string;
      await expectStatus(
        api("POST", "/api/v2/messages", hot.token, { chatId, content: "seeded message 1" }),
        [201],
        "first message",
      );
      bigChats[size] = chatId;
    }
    console.log(`bench: 100 chats, and the chats of 1k and 100k messages created with their first message (${seconds(started)})`);
    // A group of 100 (people[300] owns it, people[301..399] are in it): message-send-group-100.
    const groupMembers = people.slice(300, 400);
    const group = (
      await expectStatus(
        api("POST", "/api/v1/chats", (groupMembers[0] as BenchUser).token, {
          type: "group",
          title: "bench group of 100",
          memberIds: groupMembers.slice(1).map((member) => member.id),
        }),
        [201],
        "group",
      )
    ).data as { id: string; members: unknown[] };
    if (group.members.length !== 100) throw new Error(`the group has ${group.members.length} members, not 100`);

    // Who already talks (bench/README.md "Transfers and their chats"): the direct chats of
    // RANDOM_PAIRS pairs among people[1..998] (transfer-random-pairs pays along them), and of the
    // hot recipient (people[999]) with each of the 999 others (transfer-hot-recipient), seeded in
    // D1 before the load. transfer-first-pair pays along pairs of people[1..998] that have no chat.
    const recipientIndex = people.length - 1;
    const hotRecipient = people[recipientIndex] as BenchUser;
    const randomPairs = samplePairs(RANDOM_PAIRS, 1, recipientIndex, new Set());
    const recipientPairs = people.slice(0, recipientIndex).map((_, i): Pair => [i, recipientIndex]);
    // The hot sender (people[0]) already talks with everyone it pays, like its floor, which never
    // creates a chat: people 1..100 have theirs from the API above, 201 and 202 their big chats.
    const hotSenderPairs = people
      .map((_, i): Pair => [0, i])
      .filter(([, i]) => i > 100 && i !== 201 && i !== 202 && i < recipientIndex);
    const seededPairs = [...randomPairs, ...recipientPairs, ...hotSenderPairs];
    const chatsStarted = Date.now();
    const seededChats = await seedDirectChats(
      api,
      seededPairs.map(([a, b]) => [people[a] as BenchUser, people[b] as BenchUser] as const),
    );
    const chatOfPair = new Map(seededPairs.map(([a, b], i) => [pairKey(a, b), seededChats[i] as string]));
    const firstPair = freshPairs(1, recipientIndex, new Set(chatOfPair.keys()));
    console.log(
      `bench: direct chats of ${randomPairs.length} random pairs, of the hot recipient with ${recipientPairs.length} people and of the hot sender with ${hotSenderPairs.length} more created through the API in ${seconds(chatsStarted)} (${seconds(started)})`,
    );

    // 100k ledger entries: written into the wallet object's own SQLite file while it is stopped.
    const wallets = (await mf.getDurableObjectNamespace("WALLET")) as unknown as {
      idFromName(name: string): { toString(): string };
    };
    const walletId = wallets.idFromName(reader100k.id).toString();
    // The chats' objects flush their directory row up to SUMMARY_FLUSH_MS (250 ms) behind their answers.
    await sleep(1_000);
    await mf.dispose();
    mf = undefined;
    seedLedger(persist, walletId, 100_000);
    const chatClass = tomlClasses().objects.CHAT ?? "ChatDO";
    const histories = Object.entries(bigChats).map(([size, chatId]) =>
      seedChatHistory(persist, chatClass, chatId, Number(size), [
        hot.id,
        (people[Number(size) === 1_000 ? 201 : 202] as BenchUser).id,
      ]),
    );
    server = await startMiniflare(modules, outdir, persist, port, options.inspectorPort);
    mf = server.mf;
    db = await mf.getD1Database("DB");
    // The directory's summary of each, as its object would have flushed it.
    for (const h of histories) {
      await db
        .prepare("UPDATE chats SET last_seq = ?, last_message = ?, last_activity_at = ? WHERE id = ?")
        .bind(h.lastSeq, h.lastMessage, h.lastActivityAt, h.chatId)
        .run();
    }
    api = apiAt(server.url);
    const base = server.url;
    console.log(
      `bench: 100k ledger entries and the big chats' histories written to their objects' storage, Miniflare restarted (${seconds(started)})`,
    );

    const scenarios: Scenario[] = [];
    const pick = () => people[Math.floor(Math.random() * people.length)] as BenchUser;

    // The product's own /health: every global middleware, the envelope, the config.
    scenarios.push({ name: "health", load: { path: "/health" } });
    // Probes that split a request's cost: auth + one D1 read, auth + one wallet-object read.
    scenarios.push({ name: "users-me", load: { path: "/api/v1/users/me", token: people[5]?.token } });
    scenarios.push({ name: "wallet-me", load: { path: "/api/v1/wallets/me", token: people[5]?.token } });
    // The probe of the platform's floor (bench/bare-d1-worker.js): a bare Worker making one D1 read
    // by id (users-me's round trip).
    scenarios.push({ name: "bare-d1-read", load: { path: `${BARE_D1_PATH}/read?id=${people[5]?.id}` } });
    // The chat paths' floor (bench/bare-chat-worker.js): a bare Worker calling a bare chat object
    // that appends a message with its seq in one transaction (a send's least write), or reads the
    // newest 50 of its 100k messages (a list's least read).
    scenarios.push({
      name: "bare-chat-append",
      load: { method: "POST", path: `${BARE_CHAT_PATH}/append?chat=${BARE_CHAT_APPEND}&sender=${hot.id}` },
    });
    scenarios.push({ name: "bare-chat-read", load: { path: `${BARE_CHAT_PATH}/read?chat=${BARE_CHAT_READ}` } });
    // The transfers' floor (bench/bare-transfer-worker.js): the same work with nothing else, for
    // each pattern of the product's transfer scenarios below, along the same pairs and chats.
    const bareTransfer = (from: BenchUser, to: BenchUser, chat: string) =>
      `${BARE_TRANSFER_PATH}/pay?from=${from.id}&to=${to.id}&chat=${chat}`;
    const pickOther = (from: BenchUser) => {
      let to = pick();
      while (to === from) to = pick();
      return to;
    };
    /** A seeded pair, either way round: [payer, payee, their chat]. */
    const pickTalkingPair = (): [BenchUser, BenchUser, string] => {
      const [a, b] = randomPairs[Math.floor(Math.random() * randomPairs.length)] as Pair;
      const [from, to] = Math.random() < 0.5 ? [a, b] : [b, a];
      return [people[from] as BenchUser, people[to] as BenchUser, chatOfPair.get(pairKey(a, b)) as string];
    };
    /** The hot recipient's payers in turn (each of the 999 others once per round), so concurrent requests have distinct senders. */
    let nextPayer = 0;
    const pickPayerOfRecipient = () => {
      const from = nextPayer;
      nextPayer = (nextPayer + 1) % recipientIndex;
      return [people[from] as BenchUser, chatOfPair.get(pairKey(from, recipientIndex)) as string] as const;
    };
    const pickFirstPair = () => {
      const [from, to] = firstPair();
      return [people[from] as BenchUser, people[to] as BenchUser] as const;
    };
    scenarios.push({
      name: "bare-transfer-hot-sender",
      load: {
        method: "POST",
        path: BARE_TRANSFER_PATH,
        next: () => ({ path: bareTransfer(hot, pickOther(hot), chatIds[Math.floor(Math.random() * chatIds.length)] as string) }),
      },
    });
    scenarios.push({
      name: "bare-transfer-random-pairs",
      load: {
        method: "POST",
        path: BARE_TRANSFER_PATH,
        next: () => ({ path: bareTransfer(...pickTalkingPair()) }),
      },
    });
    scenarios.push({
      name: "bare-transfer-hot-recipient",
      load: {
        method: "POST",
        path: BARE_TRANSFER_PATH,
        next: () => {
          const [from, chat] = pickPayerOfRecipient();
          return { path: bareTransfer(from, hotRecipient, chat) };
        },
      },
    });
    scenarios.push({
      name: "bare-transfer-first-pair",
      load: {
        method: "POST",
        path: BARE_TRANSFER_PATH,
        next: () => {
          const [from, to] = pickFirstPair();
          return { path: bareTransfer(from, to, "new") };
        },
      },
    });
    scenarios.push({
      name: "transfer-hot-sender",
      load: {
        method: "POST",
        path: "/api/v1/messages/credit-transfer",
        idempotencyKey: true,
        token: hot.token,
        next: () => ({ body: { recipientId: people[1 + Math.floor(Math.random() * (people.length - 1))]?.id, amount: 1 } }),
      },
    });
    scenarios.push({
      name: "transfer-random-pairs",
      load: {
        method: "POST",
        path: "/api/v1/messages/credit-transfer",
        idempotencyKey: true,
        next: () => {
          const [from, to] = pickTalkingPair();
          return { token: from.token, body: { recipientId: to.id, amount: 1 } };
        },
      },
    });
    scenarios.push({
      name: "transfer-hot-recipient",
      load: {
        method: "POST",
        path: "/api/v1/messages/credit-transfer",
        idempotencyKey: true,
        next: () => {
          const [from] = pickPayerOfRecipient();
          return { token: from.token, body: { recipientId: hotRecipient.id, amount: 1 } };
        },
      },
    });
    scenarios.push({
      name: "transfer-first-pair",
      load: {
        method: "POST",
        path: "/api/v1/messages/credit-transfer",
        idempotencyKey: true,
        next: () => {
          const [from, to] = pickFirstPair();
          return { token: from.token, body: { recipientId: to.id, amount: 1 } };
        },
      },
    });
    const oneChat = chatIds[0] as string;
    scenarios.push({
      name: "message-send",
      load: {
        method: "POST",
        path: "/api/v2/messages",
        idempotencyKey: true,
        token: hot.token,
        next: () => ({ body: { chatId: oneChat, content: "bench message in one chat" } }),
      },
    });
    // Probe: the same send without a key, to split off what the key's D1 claim and stored outcome cost.
    scenarios.push({
      name: "message-send-unkeyed",
      load: {
        method: "POST",
        path: "/api/v2/messages",
        token: hot.token,
        next: () => ({ body: { chatId: oneChat, content: "bench message in one chat, no key" } }),
      },
    });
    scenarios.push({
      name: "message-send-100-chats",
      load: {
        method: "POST",
        path: "/api/v2/messages",
        idempotencyKey: true,
        token: hot.token,
        next: () => ({
          body: { chatId: chatIds[Math.floor(Math.random() * chatIds.length)], content: "bench message over 100 chats" },
        }),
      },
    });
    // Keyed sends into the group of 100 from its members: what the directory costs a busy group
    // (D1 rows written per send, counted by triggers during the scenario).
    scenarios.push({
      name: "message-send-group-100",
      countD1Writes: true,
      load: {
        method: "POST",
        path: "/api/v2/messages",
        idempotencyKey: true,
        next: () => ({
          token: (groupMembers[Math.floor(Math.random() * groupMembers.length)] as BenchUser).token,
          body: { chatId: group.id, content: "bench message in a group of 100" },
        }),
      },
    });
    scenarios.push({
      name: "message-list-1k",
      load: { path: `/api/v1/messages/chat/${bigChats[1_000]}?limit=50`, token: hot.token },
    });
    scenarios.push({
      name: "message-list-100k",
      load: { path: `/api/v1/messages/chat/${bigChats[100_000]}?limit=50`, token: hot.token },
    });
    scenarios.push({ name: "chat-list", load: { path: "/api/v1/chats?limit=50", token: hot.token } });
    scenarios.push({ name: "ledger-page-1k", load: { path: "/api/v1/wallets/me/transactions?limit=50", token: reader1k.token } });
    scenarios.push({
      name: "ledger-page-100k",
      load: { path: "/api/v1/wallets/me/transactions?limit=50", token: reader100k.token },
    });

    return {
      mf,
      base,
      db,
      api,
      admin,
      users: [...people, reader1k, reader100k],
      scenarios,
      sourceMap: existsSync(path.join(outdir, "index.js.map"))
        ? readFileSync(path.join(outdir, "index.js.map"), "utf8")
        : undefined,
      persist,
      chatClass: tomlClasses().objects.CHAT ?? "ChatDO",
      stop,
      dispose: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
