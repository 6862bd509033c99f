import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { clientAddress } from "../src/lib/client-address";
import { ConfigError, getConfig } from "../src/lib/config";
import { countingD1 } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";
import { NO_RATE_LIMIT, seedWalletUser } from "./support/wallets";

/**
 * The coarse request budgets (README "Rate limits"): Cloudflare's Rate Limiting binding per user
 * on every authenticated route and per client address on every route. The suite runs with them
 * raised (vitest.config.ts); here a request swaps in TEST_TIGHT_BUDGET, a real binding run by
 * Miniflare with a limit of TEST_TIGHT_BUDGET_LIMIT per minute.
 */
const LIMIT = env.TEST_TIGHT_BUDGET_LIMIT;
const tightUser = { bindings: { USER_BUDGET: env.TEST_TIGHT_BUDGET } };
const tightAddress = { bindings: { ADDRESS_BUDGET: env.TEST_TIGHT_BUDGET } };
const from = (address: string) => ({ "CF-Connecting-IP": address });
const randomByte = () => Math.floor(Math.random() * 256);
const uniqueIpv4 = () => `198.51.${randomByte()}.${randomByte()}`;
/** The first three groups of a random IPv6 address (a /48), in the documentation range. */
const uniqueIpv6Site = () => `2001:db8:${((randomByte() << 8) | randomByte()).toString(16)}`;

/**
 * Miniflare's binding counts in windows aligned to the wall-clock minute: a test that needs a
 * count to hold across a few requests starts clear of a boundary.
 */
async function clearOfMinuteBoundary() {
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 50_000) await new Promise((resolve) => setTimeout(resolve, 60_000 - intoMinute + 100));
}

function expectBudget429(result: Awaited<ReturnType<typeof call>>) {
  const body = expectError(result, 429, "rate_limited");
  expect(body.errors[0]).toBe("Too many requests");
  expect(result.headers.get("Retry-After")).toBe("60");
  // The binding knows no counts: no X-RateLimit-* from a budget.
  expect(result.headers.get("X-RateLimit-Limit")).toBeNull();
}

describe("per-user budget on authenticated routes", () => {
  it("a user looping an unlimited read gets 429 with Retry-After; another user from the same address does not", async () => {
    await clearOfMinuteBoundary();
    const [looping, bystander] = [await seedUser(), await seedUser()];
    const address = from(uniqueIpv4());
    for (let i = 0; i < LIMIT; i++) {
      expect((await call("GET", "/api/v1/users/me", { token: looping.token, headers: address, ...tightUser })).status).toBe(200);
    }
    expectBudget429(await call("GET", "/api/v1/users/me", { token: looping.token, headers: address, ...tightUser }));
    // Every route of that user shares the budget, reads and writes alike.
    const chat = await call("POST", "/api/v1/chats", {
      token: looping.token,
      body: { type: "direct", memberId: bystander.id },
      headers: address,
      ...tightUser,
    });
    expectBudget429(chat);
    expect((await call("GET", "/api/v1/users/me", { token: bystander.token, headers: address, ...tightUser })).status).toBe(200);
  });

  it("the replay loop meets its budget: a keyed retry over the budget gets its stored 201 until the replay allowance is used up", async () => {
    await clearOfMinuteBoundary();
    const [alice, bob] = [await seedWalletUser(), await seedWalletUser()];
    // The replay allowance (an exact per-user limit) tight too: two keyed requests past the budget.
    const vars = { ...NO_RATE_LIMIT, RATE_LIMIT_REPLAYS_PER_MINUTE: "2" };
    const send = (key: string, bindings: Partial<Env> = {}) =>
      call("POST", "/api/v1/messages", {
        token: alice.token,
        body: { recipientId: bob.id, content: "hello" },
        headers: { "Idempotency-Key": key },
        vars,
        bindings: { ...tightUser.bindings, ...bindings },
      });
    const pay = (bindings: Partial<Env> = {}) =>
      call("POST", "/api/v1/messages/credit-transfer", {
        token: alice.token,
        body: { recipientId: bob.id, amount: 5 },
        headers: { "Idempotency-Key": "budget-transfer" },
        vars,
        bindings: { ...tightUser.bindings, ...bindings },
      });
    const first = await send("budget-send");
    expect(first.status).toBe(201);
    const paid = await pay();
    expect(paid.status).toBe(201);
    for (let i = 2; i < LIMIT; i++) await call("GET", "/api/v1/users/me", { token: alice.token, ...tightUser });
    expectBudget429(await call("GET", "/api/v1/users/me", { token: alice.token, ...tightUser }));

    const replay = await send("budget-send");
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.json.data.id).toBe(first.json.data.id);
    const transferReplay = await pay();
    expect(transferReplay.status).toBe(201);
    expect(transferReplay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(transferReplay.json.data.transferId).toBe(paid.json.data.transferId);

    // The allowance is finite: the next replay is 429 (an exact limit: X-RateLimit-*), and it
    // reached no database on its way.
    const counted = countingD1(env.DB);
    const refused = await pay({ DB: counted.d1 });
    expectError(refused, 429, "rate_limited");
    expect(refused.headers.get("X-RateLimit-Limit")).toBe("2");
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(counted.roundTrips).toEqual([]);
    expectError(await send("budget-send"), 429, "rate_limited");
    // A key with no outcome, refused past both, kept nothing: with the budget raised, the same key runs.
    expectError(await send("budget-new"), 429, "rate_limited");
    const rerun = await call("POST", "/api/v1/messages", {
      token: alice.token,
      body: { recipientId: bob.id, content: "hello" },
      headers: { "Idempotency-Key": "budget-new" },
      vars: NO_RATE_LIMIT,
    });
    expect(rerun.status).toBe(201);
    expect(rerun.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("the admin-route loop meets 429: a non-admin looping GET /api/v1/admin/audit is charged before the admin check", async () => {
    await clearOfMinuteBoundary();
    const looping = await seedUser();
    for (let i = 0; i < LIMIT; i++) {
      expectError(
        await call("GET", "/api/v1/admin/audit", { token: looping.token, ...tightUser }),
        403,
        "insufficient_permissions",
      );
    }
    // Refused before the admin check's D1 read: the loop costs the database nothing any more.
    const counted = countingD1(env.DB);
    const limited = await call("GET", "/api/v1/admin/audit", {
      token: looping.token,
      bindings: { ...tightUser.bindings, DB: counted.d1 },
    });
    expectBudget429(limited);
    expect(counted.roundTrips).toEqual([]);
    // Invalid input after the budget is 429 too, not 400: the budget runs before validation.
    expectBudget429(await call("GET", "/api/v1/admin/audit?limit=0", { token: looping.token, ...tightUser }));
  });
});

describe("per-address budget on every route", () => {
  it("counts IPv6 clients by their /64 and IPv4 clients one by one, on /health and /openapi.json too", async () => {
    await clearOfMinuteBoundary();
    const site = uniqueIpv6Site();
    const health = (address: string) => call("GET", "/health", { headers: from(address), ...tightAddress });
    for (let i = 0; i < LIMIT; i++) expect((await health(`${site}:a:0:0:0:${i + 1}`)).status).toBe(200);
    // Another address in the same /64 (written out in full, upper case) shares the budget ...
    expectBudget429(await health(`${site.toUpperCase()}:000A:ffff:ffff:ffff:fffe`));
    expectBudget429(await call("GET", "/openapi.json", { headers: from(`${site}:a::9`), ...tightAddress }));
    expectBudget429(await call("GET", "/docs", { headers: from(`${site}:a::9`), ...tightAddress }));
    expectBudget429(await call("GET", "/docs/swagger-ui.css", { headers: from(`${site}:a::9`), ...tightAddress }));
    // ... one in the next /64 does not.
    expect((await health(`${site}:b::1`)).status).toBe(200);

    const v4 = uniqueIpv4();
    for (let i = 0; i < LIMIT; i++) expect((await health(v4)).status).toBe(200);
    expectBudget429(await health(v4));
    expect((await health(uniqueIpv4())).status).toBe(200);
  });

  it("applies to signed-in requests and unauthenticated ones alike (sign-in included)", async () => {
    await clearOfMinuteBoundary();
    const user = await seedUser();
    const address = from(uniqueIpv4());
    for (let i = 0; i < LIMIT; i++) {
      expect((await call("GET", "/api/v1/users/me", { token: user.token, headers: address, ...tightAddress })).status).toBe(200);
    }
    expectBudget429(await call("GET", "/api/v1/users/me", { token: user.token, headers: address, ...tightAddress }));
    expectBudget429(
      await call("POST", "/api/v1/auth/login", {
        body: { email: user.email, password: "whatever password" },
        headers: address,
        ...tightAddress,
      }),
    );
  });

  it("a 401 stream meets 429: requests with a bad token count against the address budget", async () => {
    await clearOfMinuteBoundary();
    const address = from(uniqueIpv4());
    const guess = () => call("GET", "/api/v1/users/me", { token: "not.a.token", headers: address, ...tightAddress });
    for (let i = 0; i < LIMIT; i++) expectError(await guess(), 401, "invalid_token");
    expectBudget429(await guess());
    // So does a stream with no token at all, and an unknown route, from that address.
    expectBudget429(await call("GET", "/api/v1/users/me", { headers: address, ...tightAddress }));
    expectBudget429(await call("GET", "/api/v1/nothing-here", { headers: address, ...tightAddress }));
  });

  it('RATE_LIMIT_BUDGETS = "off" skips both budgets (local only: any other environment refuses to serve with it)', async () => {
    await clearOfMinuteBoundary();
    const user = await seedUser();
    const both = { bindings: { USER_BUDGET: env.TEST_TIGHT_BUDGET, ADDRESS_BUDGET: env.TEST_TIGHT_BUDGET } };
    for (let i = 0; i < LIMIT + 2; i++) {
      const res = await call("GET", "/api/v1/users/me", { token: user.token, vars: { RATE_LIMIT_BUDGETS: "off" }, ...both });
      expect(res.status).toBe(200);
    }
    const production = { ...env, ENVIRONMENT: "production", JWT_SECRET: "x".repeat(48), RATE_LIMIT_BUDGETS: "off" };
    expect(() => getConfig(production)).toThrow(ConfigError);
    expect(() => getConfig(production)).toThrow(/RATE_LIMIT_BUDGETS/);
  });
});

describe("clientAddress", () => {
  it("keeps IPv4 addresses whole and groups IPv6 addresses by /64, whatever their spelling", () => {
    expect(clientAddress("203.0.113.9")).toBe("203.0.113.9");
    expect(clientAddress(" 203.0.113.9 ")).toBe("203.0.113.9");
    expect(clientAddress("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(clientAddress("2001:0DB8:0001:0002:ffff:0:0:1")).toBe("2001:db8:1:2::/64");
    expect(clientAddress("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(clientAddress("::1")).toBe("0:0:0:0::/64");
    expect(clientAddress("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientAddress("::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(clientAddress("64:ff9b::c000:201")).toBe(clientAddress("64:ff9b::192.0.2.1"));
  });

  it("never fails: a missing header is `unknown`, anything else counts under what was sent (bounded)", () => {
    expect(clientAddress(undefined)).toBe("unknown");
    expect(clientAddress("")).toBe("unknown");
    expect(clientAddress("not:an:address")).toBe("not:an:address");
    expect(clientAddress("1::2::3")).toBe("1::2::3");
    expect(clientAddress("x".repeat(500))).toHaveLength(64);
  });
});

describe("per-user budget on adding people to groups", () => {
  it("adds and group creation's memberIds share RATE_LIMIT_GROUP_ADDS_PER_MINUTE: past it, 429 with Retry-After and nothing is created", async () => {
    const [owner, a, b, c, d] = await Promise.all([seedUser(), seedUser(), seedUser(), seedUser(), seedUser()]);
    const vars = { RATE_LIMIT_GROUP_ADDS_PER_MINUTE: "3", MAX_GROUP_MEMBERS: "4" };
    const created = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "Budgeted", memberIds: [a.id, b.id, a.id] },
      vars,
    });
    expect(created.status).toBe(201);
    // Two people added (a duplicate counts once): one left.
    expect(created.headers.get("X-RateLimit-Remaining")).toBe("1");
    const chatId = created.json.data.id;
    const add = (userId: string) =>
      call("POST", `/api/v1/chats/${chatId}/members`, { token: owner.token, body: { userId }, vars });
    expect((await add(c.id)).status).toBe(200);
    const refused = await add(d.id);
    expectError(refused, 429, "rate_limited");
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("X-RateLimit-Limit")).toBe("3");
    const another = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "Another", memberIds: [d.id] },
      vars,
    });
    expectError(another, 429, "rate_limited");
    // Nothing was created or added; a direct chat adds nobody to a group and is not counted.
    const chat = await call("GET", `/api/v1/chats/${chatId}`, { token: owner.token });
    expect(chat.json.data.members.map((m: { userId: string }) => m.userId).sort()).toEqual([owner.id, a.id, b.id, c.id].sort());
    const list = await call("GET", "/api/v1/chats", { token: d.token });
    expect(list.json.data.items).toEqual([]);
    expect(
      (await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "direct", memberId: d.id }, vars })).status,
    ).toBe(201);
    // The allowance is the caller's: another owner adds freely.
    const other = await call("POST", "/api/v1/chats", {
      token: a.token,
      body: { type: "group", title: "Theirs", memberIds: [d.id] },
      vars,
    });
    expect(other.status).toBe(201);
  });

  it("a configuration whose group-add allowance cannot create a full group refuses to serve", () => {
    const vars = { ...env, RATE_LIMIT_GROUP_ADDS_PER_MINUTE: "10", MAX_GROUP_MEMBERS: "20" };
    expect(() => getConfig(vars)).toThrow(/RATE_LIMIT_GROUP_ADDS_PER_MINUTE/);
  });
});
