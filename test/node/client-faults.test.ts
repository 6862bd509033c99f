import { afterAll, beforeAll, expect, it } from "vitest";
import { CreditChatClient } from "../../client/src/client.js";
import { defaultRetryPolicy } from "../../client/src/retry.js";
import { memoryTokenStore } from "../../client/src/tokens.js";
import type { Message, Session } from "../../client/src/types.js";
import { E2E_VARS, type LocalServer, startServer } from "../e2e/support/server.ts";
import { startFaultProxy } from "./fault-proxy.ts";

/**
 * The SDK against the real local server through a proxy that answers 503, drops requests before
 * and after the server handled them, refuses and cuts sockets, on a seeded schedule
 * (CLIENT_FAULT_SEED replays one). 1,000 messages and 200 transfers go through it; the server must
 * hold exactly one of each, and a second client, connected throughout, must deliver every message
 * of the chat exactly once and in seq order.
 *
 * The per-user limits (120 sends/min/chat, 60 transfers/min) and the request budgets are raised
 * for this server, so the test measures the faults, not the limiter (whose 429 + Retry-After path
 * the unit tests cover).
 */
const SEED = Number(process.env.CLIENT_FAULT_SEED ?? 28);
const MESSAGES = 1_000;
const TRANSFERS = 200;
const CONCURRENCY = 6;
const VARS = {
  ...E2E_VARS,
  SIGNUP_CREDITS: "1000",
  RATE_LIMIT_BUDGETS: "off",
  RATE_LIMIT_MESSAGES_PER_MINUTE: "1000000",
  RATE_LIMIT_TRANSFERS_PER_MINUTE: "1000000",
};

let server: LocalServer | undefined;
let proxy: Awaited<ReturnType<typeof startFaultProxy>> | undefined;

beforeAll(async () => {
  server = await startServer(VARS);
  proxy = await startFaultProxy(server.port, SEED, {
    unavailable: 0.06,
    dropBefore: 0.04,
    dropAfter: 0.06,
    refuseUpgrade: 0.3,
    socketLifeMs: [300, 2_500],
  });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
});

/** A client through the proxy, signed in as `session`, retrying harder than the default (the proxy fails ~16% of attempts). */
function throughProxy(session: Session): CreditChatClient {
  return new CreditChatClient({
    baseUrl: proxy?.baseUrl ?? "",
    tokens: memoryTokenStore({ accessToken: session.accessToken, refreshToken: session.refreshToken }),
    retry: defaultRetryPolicy({ maxAttempts: 25, baseMs: 20, maxMs: 500 }),
    timeoutMs: 10_000,
    realtime: { backoff: { baseMs: 50, maxMs: 1_000 }, pingIntervalMs: 2_000, pongTimeoutMs: 2_000 },
  });
}

async function register(name: string): Promise<Session> {
  const direct = new CreditChatClient({ baseUrl: server?.baseUrl ?? "" });
  return direct.register({ email: `${name}-${Date.now()}@example.com`, password: "password-123", displayName: name });
}

/** Runs `count` operations with `concurrency` in flight. */
async function pool(count: number, concurrency: number, operation: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await operation(next++);
    }),
  );
}

it("1,000 messages and 200 transfers through faults: each held once, each delivered once and in order", async () => {
  const [a, b] = [await register("fault-a"), await register("fault-b")];
  const sender = throughProxy(a);
  const reader = throughProxy(b);
  const chat = await sender.openDirectChat(b.user.id);

  const delivered: Message[] = [];
  reader.on("message", (message) => delivered.push(message));
  await reader.watch(chat.id, 0);
  await reader.connect();

  const started = Date.now();
  const sends = pool(MESSAGES, CONCURRENCY, (i) => sender.sendMessage(chat.id, `message ${i}`));
  const payments = pool(TRANSFERS, 2, async () => {
    const sent = await sender.sendCredits(b.user.id, 1);
    expect(sent.status).toBe("posted");
  });
  await Promise.all([sends, payments]);
  const sendSeconds = (Date.now() - started) / 1000;

  // Let the reader's last catch-up through and check what the server holds, read directly.
  proxy?.heal();
  const direct = new CreditChatClient({ baseUrl: server?.baseUrl ?? "", tokens: memoryTokenStore(a) });
  const held: Message[] = [];
  for await (const message of direct.messagesAfter(chat.id, 0)) held.push(message);
  const texts = held.filter((m) => m.type === "text").map((m) => m.content);
  expect(texts).toHaveLength(MESSAGES);
  expect(new Set(texts).size).toBe(MESSAGES);
  const transferMessages = held.filter((m) => m.type === "credit_transfer");
  expect(transferMessages).toHaveLength(TRANSFERS);
  const ledger: string[] = [];
  for await (const entry of direct.transactions(100)) if (entry.kind === "transfer_out") ledger.push(entry.transferId);
  expect(ledger).toHaveLength(TRANSFERS);
  expect(new Set(ledger).size).toBe(TRANSFERS);
  expect((await direct.wallet()).balance).toBe(1000 - TRANSFERS);

  const deadline = Date.now() + 60_000;
  while (delivered.length < held.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(delivered.map((m) => m.seq)).toEqual(held.map((m) => m.seq));
  expect(delivered.map((m) => m.seq)).toEqual(Array.from({ length: MESSAGES + TRANSFERS }, (_, i) => i + 1));
  reader.disconnect();

  const counts = proxy?.counts;
  console.log(
    `client-faults (seed ${SEED}): ${MESSAGES} messages + ${TRANSFERS} transfers in ${sendSeconds.toFixed(1)} s; proxy ${JSON.stringify(counts)}; reader delivered ${delivered.length} once, in order`,
  );
  // The schedule must actually have hit every kind of fault, else this proves nothing.
  for (const key of ["unavailable", "dropBefore", "dropAfter", "refusedUpgrades", "cutSockets"] as const)
    expect(counts?.[key]).toBeGreaterThan(0);
}, 600_000);
