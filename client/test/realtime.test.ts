import { describe, expect, it } from "vitest";
import { CreditChatClient } from "../src/client.js";
import { memoryTokenStore } from "../src/tokens.js";
import type { Message } from "../src/types.js";
import { envelope, fakeFetch, message } from "./fakes.js";

const CHAT = "c".repeat(24);

/** A WebSocket the test drives: it opens on the next tick and records what the client sent. */
class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static all: FakeSocket[] = [];
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.();
    }, 1);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  frame(type: string, data: unknown) {
    this.onmessage?.({ data: JSON.stringify({ type, data, at: new Date().toISOString() }) });
  }
  serverClose(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(check()).toBe(true);
};

function setup(stored: { count: number }) {
  FakeSocket.all = [];
  let tickets = 0;
  const afterSeqs: number[] = [];
  const { fetch } = fakeFetch((request) => {
    const url = new URL(request.url);
    if (url.pathname === "/api/v1/realtime/tickets") return envelope(201, { ticket: `t${++tickets}`, expiresIn: 60 });
    const afterSeq = Number(url.searchParams.get("afterSeq"));
    afterSeqs.push(afterSeq);
    const items = Array.from({ length: Math.max(0, stored.count - afterSeq) }, (_, i) => message(CHAT, afterSeq + i + 1));
    return envelope(200, { items, nextCursor: null });
  });
  const client = new CreditChatClient({
    baseUrl: "http://api.test",
    fetch,
    tokens: memoryTokenStore({ accessToken: "a", refreshToken: "r" }),
    WebSocket: FakeSocket as unknown as typeof WebSocket,
    realtime: { backoff: { baseMs: 1, maxMs: 4 }, pingIntervalMs: 10, pongTimeoutMs: 5 },
  });
  const seqs: number[] = [];
  client.on("message", (m: Message) => seqs.push(m.seq));
  return { client, seqs, afterSeqs, tickets: () => tickets };
}

describe("realtime", () => {
  it("after a dropped socket, reconnects with a new ticket and catches up from the last delivered seq", async () => {
    const stored = { count: 2 };
    const { client, seqs, afterSeqs } = setup(stored);
    await client.watch(CHAT, 0);
    await client.connect();
    const first = FakeSocket.all[0];
    expect(first?.url).toBe("ws://api.test/api/v1/realtime?ticket=t1");
    stored.count = 3;
    first?.frame("message.created", message(CHAT, 3));
    expect(seqs).toEqual([1, 2, 3]);
    stored.count = 6;
    first?.serverClose(1006);
    await until(() => seqs.length === 6);
    expect(FakeSocket.all[1]?.url).toContain("ticket=t2");
    expect(afterSeqs.at(-1)).toBe(3);
    // A late frame for something already delivered by the catch-up is dropped.
    FakeSocket.all[1]?.frame("message.created", message(CHAT, 5));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6]);
    client.disconnect();
  });

  it("pings to keep the socket alive and abandons a silent one", async () => {
    const { client } = setup({ count: 0 });
    await client.connect();
    await until(() => (FakeSocket.all[0]?.sent.length ?? 0) > 0);
    expect(FakeSocket.all[0]?.sent[0]).toBe('{"type":"ping"}');
    // No pong ever comes: a second socket replaces the silent one.
    await until(() => FakeSocket.all.length > 1);
    client.disconnect();
  });

  for (const [code, event] of [
    [4001, "signedOut"],
    [4003, "suspended"],
    [4008, "replaced"],
  ] as const) {
    it(`close code ${code} becomes "${event}" and no reconnect`, async () => {
      const { client, tickets } = setup({ count: 0 });
      const seen: string[] = [];
      client.on(event, ({ reason }) => seen.push(reason));
      await client.connect();
      FakeSocket.all[0]?.serverClose(code, "why");
      await until(() => seen.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(FakeSocket.all).toHaveLength(1);
      expect(tickets()).toBe(1);
      expect(client.state).toBe("closed");
    });
  }
});
