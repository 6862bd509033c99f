import { describe, expect, it } from "vitest";
import { CreditChatClient } from "../src/client.js";
import { ApiError } from "../src/errors.js";
import { backoffDelay, defaultRetryPolicy, retryAfterMs } from "../src/retry.js";
import { memoryTokenStore } from "../src/tokens.js";
import { envelope, FAST, fakeFetch, message, refusal } from "./fakes.js";

const policy = defaultRetryPolicy({ maxAttempts: 5, baseMs: 100, maxMs: 1_000, random: () => 1 });

describe("defaultRetryPolicy", () => {
  it("retries network errors and 5xx with a growing backoff, capped", () => {
    expect(policy({ attempt: 1, error: new TypeError("fetch failed") })).toBe(100);
    expect(policy({ attempt: 2, response: new Response(null, { status: 503 }) })).toBe(200);
    expect(policy({ attempt: 4, response: new Response(null, { status: 500 }) })).toBe(800);
    expect(backoffDelay(9, { baseMs: 100, maxMs: 1_000, random: () => 1 })).toBe(1_000);
  });

  it("jitters: half the delay is fixed, half random", () => {
    expect(backoffDelay(3, { baseMs: 100, maxMs: 10_000, random: () => 0 })).toBe(200);
    expect(backoffDelay(3, { baseMs: 100, maxMs: 10_000, random: () => 0.5 })).toBe(300);
  });

  it("waits out a 429's Retry-After", () => {
    const response = new Response(null, { status: 429, headers: { "Retry-After": "3" } });
    expect(retryAfterMs(response)).toBe(3_000);
    expect(policy({ attempt: 1, response })).toBe(3_000);
  });

  it("returns answers (4xx) at once and stops after maxAttempts", () => {
    expect(policy({ attempt: 1, response: new Response(null, { status: 409 }) })).toBeNull();
    expect(policy({ attempt: 1, response: new Response(null, { status: 400 }) })).toBeNull();
    expect(policy({ attempt: 5, error: new TypeError("fetch failed") })).toBeNull();
  });
});

describe("safe writes", () => {
  const tokens = () => memoryTokenStore({ accessToken: "access", refreshToken: "refresh" });

  it("sendMessage keeps one Idempotency-Key and clientMessageId across network errors, 503 and 429", async () => {
    let n = 0;
    const { fetch, requests } = fakeFetch(() => {
      n++;
      if (n === 1) throw new TypeError("fetch failed");
      if (n === 2) return new Response("upstream down", { status: 503 });
      if (n === 3) return refusal(429, "rate_limited", { "Retry-After": "0" });
      return envelope(201, message("c".repeat(24), 1));
    });
    const client = new CreditChatClient({ baseUrl: "http://api.test", fetch, tokens: tokens(), retry: defaultRetryPolicy(FAST) });
    await client.sendMessage("c".repeat(24), "hello");
    expect(requests).toHaveLength(4);
    const keys = new Set(requests.map((r) => r.headers.get("Idempotency-Key")));
    const ids = new Set(await Promise.all(requests.map(async (r) => (await r.json()).clientMessageId)));
    expect(keys.size).toBe(1);
    expect(ids.size).toBe(1);
    expect([...keys][0]).toBeTruthy();

    // The next operation is another payment of attention: a new key.
    await client.sendMessage("c".repeat(24), "again");
    expect(requests[4]?.headers.get("Idempotency-Key")).not.toBe([...keys][0]);
  });

  it("sendCredits reuses its key across retries and does not retry a business refusal", async () => {
    const answers = [new Response(null, { status: 502 }), refusal(409, "insufficient_balance")];
    const { fetch, requests } = fakeFetch(() => answers.shift() ?? refusal(500, "internal_error"));
    const client = new CreditChatClient({ baseUrl: "http://api.test", fetch, tokens: tokens(), retry: defaultRetryPolicy(FAST) });
    const failure = await client.sendCredits("b".repeat(24), 25).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ApiError);
    expect((failure as ApiError).code).toBe("insufficient_balance");
    expect(requests).toHaveLength(2);
    expect(requests[0]?.headers.get("Idempotency-Key")).toBe(requests[1]?.headers.get("Idempotency-Key"));
  });

  it("a replaced policy decides instead", async () => {
    const { fetch, requests } = fakeFetch(() => new Response(null, { status: 503 }));
    const client = new CreditChatClient({
      baseUrl: "http://api.test",
      fetch,
      tokens: tokens(),
      retry: ({ attempt }) => (attempt < 3 ? 0 : null),
    });
    await expect(client.sendDirectMessage("b".repeat(24), "hi")).rejects.toBeInstanceOf(ApiError);
    expect(requests).toHaveLength(3);
  });

  it("sendCredits follows a 202 to its end through the transfer lookup", async () => {
    const pending = {
      transferId: "f".repeat(24),
      senderId: "a".repeat(24),
      recipientId: "b".repeat(24),
      transferredAmount: 25,
      senderBalance: 75,
      createdAt: "2026-01-01T00:00:00.000Z",
      status: "pending",
      chatId: null,
      messageId: null,
      recipientBalance: null,
    };
    const lookups = [
      pending,
      pending,
      { ...pending, status: "posted", chatId: "c".repeat(24), messageId: "f".repeat(24), recipientBalance: 125 },
    ];
    const { fetch, requests } = fakeFetch((request) =>
      request.method === "POST" ? envelope(202, pending) : envelope(200, lookups.shift()),
    );
    const client = new CreditChatClient({
      baseUrl: "http://api.test",
      fetch,
      tokens: tokens(),
      transferPoll: { baseMs: 1, maxMs: 2 },
    });
    const sent = await client.sendCredits("b".repeat(24), 25);
    expect(sent.status).toBe("posted");
    expect(sent.transfer.recipientBalance).toBe(125);
    expect(requests.filter((r) => r.method === "POST")).toHaveLength(1);
    expect(requests.filter((r) => r.url.endsWith(`/transfers/${"f".repeat(24)}`))).toHaveLength(3);
  });
});
