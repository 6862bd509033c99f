/**
 * Realtime fan-out scenario: a group of N members (default 100), every member connected over
 * WebSocket, one member sends a message → time until EVERY member's socket has its
 * `message.created` frame. Repeated `rounds` times; reports the median and p99 of that time, the
 * spread of single deliveries, and `GET /health` measured in the same run for the ratio.
 *
 * Talks to a running server over real HTTP and real WebSockets (Node 22's global WebSocket), so
 * it measures the product as clients see it. The caller starts the server (with the message
 * rate limit raised through RATE_LIMIT_MESSAGES_PER_MINUTE / RATE_LIMIT_AUTH_IP_PER_MINUTE and the
 * request budgets off through RATE_LIMIT_BUDGETS, as BENCH_VARS does, or the limiter is what gets
 * measured) and stops it.
 *
 *   node bench/realtime-fanout.ts http://127.0.0.1:8787 [members] [rounds]
 *
 * or, from another bench script: `import { measureGroupFanout } from "./realtime-fanout.ts"`.
 */

type Envelope<T> = { isSuccess: boolean; statusCode: number; data: T; errors: string[] | null; code?: string };

export type FanoutOptions = { members?: number; rounds?: number; warmup?: number; timeoutMs?: number };

export type FanoutResult = {
  members: number;
  rounds: number;
  /** Per round: ms from sending the POST until the last member's socket had the frame. */
  allMembersMs: { median: number; p99: number; max: number };
  /** Every single (member, round) delivery: ms from sending the POST until that socket had it. */
  eachDeliveryMs: { median: number; p99: number };
  /** The sender's HTTP round trip of POST /api/v2/messages. */
  sendMs: { median: number; p99: number };
  /** GET /health in the same run, sequential: the baseline for ratios on a noisy machine. */
  healthMs: { median: number; p99: number };
  allMembersMedianToHealthMedian: number;
};

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
};
const round2 = (n: number) => Math.round(n * 100) / 100;
const summary = (values: number[]) => ({ median: round2(quantile(values, 0.5)), p99: round2(quantile(values, 0.99)) });

async function api<T>(baseUrl: string, method: string, path: string, token?: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = (await res.json()) as Envelope<T>;
  if (!json.isSuccess) throw new Error(`${method} ${path} → ${res.status} ${json.code}: ${json.errors?.join("; ")}`);
  return json.data;
}

async function inBatches<T, R>(items: T[], size: number, run: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await Promise.all(items.slice(i, i + size).map((item, j) => run(item, i + j)))));
  }
  return out;
}

type Member = { id: string; token: string; socket: WebSocket; seen: Map<string, number> };

async function connect(baseUrl: string, token: string): Promise<{ socket: WebSocket; seen: Map<string, number> }> {
  const { url } = await api<{ url: string }>(baseUrl, "POST", "/api/v1/realtime/tickets", token);
  const socket = new WebSocket(url);
  const seen = new Map<string, number>();
  socket.addEventListener("message", (event) => {
    const at = performance.now();
    const frame = JSON.parse(String(event.data)) as { type: string; data?: { content?: string | null } };
    if (frame.type === "message.created" && frame.data?.content) seen.set(frame.data.content, at);
  });
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error("WebSocket failed to open")), { once: true });
  });
  return { socket, seen };
}

export async function measureGroupFanout(baseUrl: string, options: FanoutOptions = {}): Promise<FanoutResult> {
  const { members: size = 100, rounds = 30, warmup = 3, timeoutMs = 15_000 } = options;
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

  const accounts = await inBatches(
    Array.from({ length: size }, (_, i) => i),
    10,
    async (i) => {
      const data = await api<{ user: { id: string }; accessToken: string }>(baseUrl, "POST", "/api/v1/auth/register", undefined, {
        email: `fanout-${run}-${i}@bench.example.com`,
        password: "bench-password-1",
        displayName: `Fanout ${i}`,
      });
      return { id: data.user.id, token: data.accessToken };
    },
  );
  const [owner, ...others] = accounts;
  if (!owner) throw new Error("members must be at least 1");
  const chat = await api<{ id: string; members: unknown[] }>(baseUrl, "POST", "/api/v1/chats", owner.token, {
    type: "group",
    title: `fan-out ${run}`,
    memberIds: others.map((other) => other.id),
  });
  if (chat.members.length !== size) throw new Error(`group has ${chat.members.length} members, expected ${size}`);

  const members: Member[] = await inBatches(accounts, 10, async (account) => ({
    ...account,
    ...(await connect(baseUrl, account.token)),
  }));

  const health: number[] = [];
  for (let i = 0; i < 50; i += 1) {
    const start = performance.now();
    await api(baseUrl, "GET", "/health");
    health.push(performance.now() - start);
  }

  const allMembers: number[] = [];
  const each: number[] = [];
  const sends: number[] = [];
  try {
    for (let r = 0; r < warmup + rounds; r += 1) {
      const content = `fanout ${run} round ${r}`;
      const start = performance.now();
      await api(baseUrl, "POST", "/api/v2/messages", owner.token, { chatId: chat.id, content });
      const sent = performance.now();
      const deadline = Date.now() + timeoutMs;
      while (members.some((member) => !member.seen.has(content))) {
        if (Date.now() > deadline) {
          const missing = members.filter((member) => !member.seen.has(content)).length;
          throw new Error(`round ${r}: ${missing} of ${size} members had no frame after ${timeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      if (r < warmup) continue;
      const times = members.map((member) => (member.seen.get(content) ?? Number.NaN) - start);
      sends.push(sent - start);
      each.push(...times);
      allMembers.push(Math.max(...times));
    }
  } finally {
    for (const member of members) member.socket.close(1000, "bench done");
  }

  const all = summary(allMembers);
  const healthSummary = summary(health);
  return {
    members: size,
    rounds,
    allMembersMs: { ...all, max: round2(Math.max(...allMembers)) },
    eachDeliveryMs: summary(each),
    sendMs: summary(sends),
    healthMs: healthSummary,
    allMembersMedianToHealthMedian: round2(all.median / healthSummary.median),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [baseUrl, members, rounds] = process.argv.slice(2);
  if (!baseUrl) {
    console.error("usage: node bench/realtime-fanout.ts <baseUrl> [members=100] [rounds=30]");
    process.exit(2);
  }
  measureGroupFanout(baseUrl.replace(/\/$/, ""), {
    members: members ? Number(members) : undefined,
    rounds: rounds ? Number(rounds) : undefined,
  }).then(
    (result) => console.log(JSON.stringify(result, null, 2)),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
