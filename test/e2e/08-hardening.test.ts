import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { api, assertError, assertOk, PASSWORD, raw, registerUser } from "./support/client.ts";

/**
 * Issue 29 over HTTP, at the local defaults the server runs with: a non-admin looping an admin
 * route is charged before the admin check and meets 429; the owner signs in through a storm of
 * wrong guesses with the device token of an earlier sign-in.
 */
const toml = readFileSync(path.resolve(import.meta.dirname, "../../wrangler.toml"), "utf8");
// The first USER_BUDGET is the top-level (local) one, which `wrangler dev` serves.
const USER_BUDGET = Number(/name = "USER_BUDGET"\s+namespace_id = "\d+"\s+simple = \{ limit = (\d+)/.exec(toml)?.[1]);
const CONCURRENCY = 20;

describe("budgets before any work, and sign-in through a storm, over HTTP", () => {
  it("the admin-route loop meets 429: GET /api/v1/admin/audit by a non-admin is 403 until the user budget answers 429", {
    timeout: 180_000,
  }, async () => {
    assert.ok(USER_BUDGET > 0, "USER_BUDGET not found in wrangler.toml");
    const looper = await registerUser("Admin Looper");
    // Its own address, so the loop spends none of the address budget the rest of the suite shares.
    const headers = { "CF-Connecting-IP": "198.51.100.29" };
    const readAudit = () => looper.client.GET("/api/v1/admin/audit", { params: { query: {} }, headers });
    let refused = 0;
    let limited: Awaited<ReturnType<typeof readAudit>> | undefined;
    // Miniflare counts in windows aligned to the minute: one may close mid-loop, so allow two budgets.
    while (!limited && refused <= 2 * USER_BUDGET) {
      for (const res of await Promise.all(Array.from({ length: CONCURRENCY }, readAudit))) {
        if (res.response.status === 429) limited ??= res;
        else {
          assertError(res, 403, "insufficient_permissions");
          refused += 1;
        }
      }
    }
    assert.ok(limited, `no 429 after ${refused} refused requests`);
    assert.ok(refused >= USER_BUDGET - CONCURRENCY, `429 after only ${refused} requests (budget ${USER_BUDGET})`);
    assertError(limited, 429, "rate_limited");
    assert.match(limited.response.headers.get("Retry-After") ?? "", /^\d+$/);
  });

  it("the owner signs in through a 50-a-minute storm of wrong guesses from 5 addresses, with the device token of an earlier sign-in", async () => {
    const owner = await registerUser("Stormed Owner");
    const earlier = assertOk(await api().POST("/api/v1/auth/login", { body: { email: owner.email, password: PASSWORD } }), 200);
    assert.match(earlier.deviceToken, /^dt1\./);
    const login = (password: string, address: string, deviceToken?: string) =>
      raw("POST", "/api/v1/auth/login", {
        headers: { "Content-Type": "application/json", "CF-Connecting-IP": address },
        body: JSON.stringify({ email: owner.email, password, ...(deviceToken ? { deviceToken } : {}) }),
      });
    // 10 wrong guesses from each of 5 addresses: the per-email ceiling (50 a minute) is full.
    const storm = await Promise.all(Array.from({ length: 50 }, (_, i) => login("wrong password!", `203.0.113.${100 + (i % 5)}`)));
    for (const res of storm) assertError(res, 401, "invalid_credentials");
    assertError(await login(PASSWORD, "192.0.2.77"), 429, "rate_limited");
    // The owner's device gets through, the right password checked and answered.
    const through = await login(PASSWORD, "192.0.2.78", earlier.deviceToken);
    assert.equal(through.status, 200, JSON.stringify(through.json));
  });
});
