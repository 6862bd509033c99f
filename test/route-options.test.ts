import { describe, expect, it } from "vitest";
import { defineRoute } from "../src/lib/openapi";
import { displayNameField } from "../src/schemas/auth";
import { NO_CONTROL_CHARACTERS_MESSAGE } from "../src/schemas/text";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";

/**
 * What `defineRoute`'s options install (lib/openapi.ts): auth and admin checks before the request
 * is validated, the Idempotency-Key step before the rate limit, the limits themselves.
 */
describe("route options: idempotent + rateLimit on message sends", () => {
  it("a stored outcome answers its key before the rate limit: the retry past the limit still gets the original 201", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const vars = { RATE_LIMIT_MESSAGES_PER_MINUTE: "1" };
    const send = (key: string) =>
      call("POST", "/api/v1/messages", {
        token: a.token,
        body: { recipientId: b.id, content: "lost response" },
        headers: { "Idempotency-Key": key },
        vars,
      });
    const first = await send("lost-201");
    expect(first.status).toBe(201);
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("0");
    // The limit is spent: a new key is refused, and nothing it refused is stored for that key.
    expectError(await send("new-key"), 429, "rate_limited");
    const replay = await send("lost-201");
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(first.text);
    // Once the limit allows it again, the refused key runs (a 429 stores nothing).
    const retried = await call("POST", "/api/v1/messages", {
      token: a.token,
      body: { recipientId: b.id, content: "lost response" },
      headers: { "Idempotency-Key": "new-key" },
    });
    expect(retried.status).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("a malformed Idempotency-Key is 400 on every idempotent route, before anything runs", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const admin = await seedUser({ role: "admin" });
    const headers = { "Idempotency-Key": "x".repeat(256) };
    const refused = [
      await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "hi" }, headers }),
      await call("POST", "/api/v1/messages/credit-transfer", { token: a.token, body: { recipientId: b.id, amount: 1 }, headers }),
      await call("POST", `/api/v1/admin/wallets/${b.id}/grants`, {
        token: admin.token,
        body: { amount: 5, reason: "test" },
        headers: { "Idempotency-Key": "tab\tinside" },
      }),
    ];
    for (const res of refused) {
      const body = expectError(res, 400, "validation_failed");
      expect(body.errors[1]).toBe("Idempotency-Key: must be 1 to 255 printable ASCII characters");
    }
    const chats = await call("GET", "/api/v1/chats", { token: a.token });
    expect(chats.json.data.items).toEqual([]);
    const ledger = await call("GET", "/api/v1/wallets/me/transactions", { token: b.token });
    expect(ledger.json.data.items.map((entry: { kind: string }) => entry.kind)).not.toContain("transfer_in");
  });
});

describe("defineRoute", () => {
  const route = { method: "get", path: "/x", operationId: "getX", responses: { 200: { description: "ok" } } } as const;

  it("refuses statuses listed by hand that the options imply (they are documented by the options)", () => {
    expect(() => defineRoute(route, { auth: "admin", errors: [403] })).toThrow("getX: errors 403 are implied");
    expect(() => defineRoute(route, { auth: "user", rateLimit: ["messages"], errors: [401, 429, 404] })).toThrow(
      "getX: errors 401, 429 are implied",
    );
    expect(() => defineRoute(route, { auth: "user", errors: [404] })).not.toThrow();
  });

  it("documents the options on the route: security, statuses, success headers", () => {
    type Documented = { security: unknown; responses: Record<string, { headers?: Record<string, unknown> }> };
    const defined = defineRoute(route, {
      auth: "admin",
      idempotent: "wallet",
      rateLimit: [{ scope: "transfers", countedBy: "wallet" }],
    });
    const doc = defined as unknown as Documented;
    expect(doc.security).toEqual([{ "JWT-auth": [] }]);
    expect(Object.keys(doc.responses).sort()).toEqual(["200", "400", "401", "403", "409", "429", "500"]);
    expect(Object.keys(doc.responses[200]?.headers ?? {}).sort()).toEqual([
      "Idempotent-Replayed",
      "X-RateLimit-Limit",
      "X-RateLimit-Remaining",
      "X-RateLimit-Reset",
    ]);
    expect((defineRoute(route, { auth: "none" }) as unknown as Documented).security).toEqual([]);
  });
});

describe('route options: auth "admin"', () => {
  it("answers 403 to a signed-in non-admin before validating anything, on every admin route", async () => {
    const user = await seedUser();
    const target = await seedUser();
    const attempts = [
      // Bodies that would be 400 for an admin: the non-admin learns nothing about them.
      call("POST", `/api/v1/admin/wallets/${target.id}/grants`, { token: user.token, body: { amount: "lots" } }),
      call("POST", "/api/v1/admin/users/not-an-id/suspension", { token: user.token, body: {} }),
      call("DELETE", `/api/v1/admin/users/${target.id}/suspension`, { token: user.token }),
      call("GET", "/api/v1/admin/reconciliation", { token: user.token }),
    ];
    for (const res of await Promise.all(attempts)) {
      const body = expectError(res, 403, "insufficient_permissions");
      expect(body.errors[1]).toBe("This operation is for admins only");
    }
    const admin = await seedUser({ role: "admin" });
    expectError(
      await call("POST", `/api/v1/admin/wallets/${target.id}/grants`, { token: admin.token, body: { amount: "lots" } }),
      400,
      "validation_failed",
    );
  });

  it("still answers 401 before 403 without a token", async () => {
    expectError(await call("GET", "/api/v1/admin/reconciliation"), 401, "authentication_required");
  });
});

describe("displayName pattern (flag-free, the same in JSON Schema)", () => {
  it("refuses exactly the Unicode control characters (Cc), as /^[^\\p{Cc}]*$/u did, over every code point", () => {
    const published = /^[^\u0000-\u001f\u007f-\u009f]*$/;
    const cc = /^\p{Cc}$/u;
    let controls = 0;
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const ch = String.fromCodePoint(cp);
      const isControl = cc.test(ch);
      if (isControl) controls++;
      if (published.test(ch) === isControl) throw new Error(`U+${cp.toString(16)} differs`);
    }
    expect(controls).toBe(65);
    expect(displayNameField.safeParse("Zoë 🚀 Ñandú").success).toBe(true);
    expect(displayNameField.safeParse("bell\u0007").success).toBe(false);
    expect(displayNameField.safeParse("nel\u0085").success).toBe(false);
  });

  it("registers a name with accented letters and emoji, and refuses a control character with 400", async () => {
    const email = `unicode-${crypto.randomUUID()}@example.com`;
    const ok = await call("POST", "/api/v1/auth/register", {
      body: { email, password: "correct horse battery", displayName: "Zoë Ñandú 🚀👩‍💻" },
      headers: { "CF-Connecting-IP": `10.9.${Math.floor(Math.random() * 250)}.1` },
    });
    expect(ok.status).toBe(201);
    expect(ok.json.data.user.displayName).toBe("Zoë Ñandú 🚀👩‍💻");
    const refused = await call("POST", "/api/v1/auth/register", {
      body: { email: `x${email}`, password: "correct horse battery", displayName: "tab\there" },
    });
    expect(expectError(refused, 400, "validation_failed").errors).toContain(`displayName: ${NO_CONTROL_CHARACTERS_MESSAGE}`);
  });
});

describe("request id (hono/request-id)", () => {
  it("answers the server's own X-Request-Id, whatever the client sent", async () => {
    const mine = await call("GET", "/health", { headers: { "X-Request-Id": "client-abc-123" } });
    expect(mine.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    const again = await call("GET", "/health", { headers: { "X-Request-Id": "client-abc-123" } });
    expect(again.headers.get("X-Request-Id")).not.toBe(mine.headers.get("X-Request-Id"));
    const unsafe = await call("GET", "/health", { headers: { "X-Request-Id": "<script>" } });
    expect(unsafe.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});
