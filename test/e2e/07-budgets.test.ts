import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { assertError, registerUser } from "./support/client.ts";

/**
 * The coarse request budgets over HTTP, at the local defaults of wrangler.toml (the server does not
 * raise them: test/e2e/support/server.ts): a user looping a read that has no limit of its own is
 * stopped by the per-user budget.
 */
const toml = readFileSync(path.resolve(import.meta.dirname, "../../wrangler.toml"), "utf8");
// The first USER_BUDGET is the top-level (local) one, which `wrangler dev` serves.
const USER_BUDGET = Number(/name = "USER_BUDGET"\s+namespace_id = "\d+"\s+simple = \{ limit = (\d+)/.exec(toml)?.[1]);
const CONCURRENCY = 20;

describe("request budgets over HTTP", () => {
  // Up to two budgets' worth of requests through wrangler dev: more than the suite's 60 s default on a busy machine.
  it("a user looping GET /api/v1/users/me gets 429 rate_limited with Retry-After; another user is unaffected", {
    timeout: 180_000,
  }, async () => {
    assert.ok(USER_BUDGET > 0, "USER_BUDGET not found in wrangler.toml");
    const looper = await registerUser("Looper");
    const bystander = await registerUser("Bystander");
    // Its own client address (Miniflare keeps a CF-Connecting-IP the client sent; Cloudflare sets
    // it itself), so the loop spends none of the address budget the rest of the suite shares.
    const headers = { "CF-Connecting-IP": "198.51.100.23" };
    let ok = 0;
    const readMe = () => looper.client.GET("/api/v1/users/me", { headers });
    let limited: Awaited<ReturnType<typeof readMe>> | undefined;
    // Miniflare counts in windows aligned to the minute: one may close mid-loop, so allow two budgets.
    while (!limited && ok <= 2 * USER_BUDGET) {
      const batch = await Promise.all(Array.from({ length: CONCURRENCY }, readMe));
      for (const res of batch) {
        if (res.response.status === 200) ok += 1;
        else limited ??= res;
      }
    }
    assert.ok(limited, `no 429 after ${ok} requests`);
    assert.ok(ok >= USER_BUDGET - CONCURRENCY, `429 after only ${ok} requests (budget ${USER_BUDGET})`);
    assertError(limited, 429, "rate_limited");
    const retryAfter = limited.response.headers.get("Retry-After") ?? "";
    assert.match(retryAfter, /^\d+$/);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 60);
    // The budget is the account's: another account at the same address goes on.
    assert.equal((await bystander.client.GET("/api/v1/users/me", { headers })).response.status, 200);
  });
});
