import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { hashPassword, PBKDF2_ITERATIONS, verifyPassword } from "../src/services/password";
import { call } from "./support/http";

describe("password hashing", () => {
  afterEach(() => vi.restoreAllMocks());

  it("salts every hash and verifies only the right password", async () => {
    const [a, b] = [await hashPassword("same password"), await hashPassword("same password")];
    expect(a).not.toBe(b);
    expect(a.startsWith(`pbkdf2-sha256$${PBKDF2_ITERATIONS}$`)).toBe(true);
    expect(await verifyPassword("same password", a)).toBe(true);
    expect(await verifyPassword("same password ", a)).toBe(false);
    expect(await verifyPassword("Same password", b)).toBe(false);
  });

  it("reads the iterations from the stored hash, and refuses what it cannot parse", async () => {
    const stored = await hashPassword("pw-12345678");
    const [scheme, , salt, hash] = stored.split("$");
    // Same salt and key claimed under other parameters: a different derivation, so no match.
    expect(await verifyPassword("pw-12345678", `${scheme}$1000$${salt}$${hash}`)).toBe(false);
    for (const broken of [
      "",
      "seeded$cannot-sign-in",
      `${scheme}$200000$${salt}$${hash}`,
      `${scheme}$0$${salt}$${hash}`,
      `${scheme}$${PBKDF2_ITERATIONS}$${salt}$${hash?.slice(0, 20)}`,
      `${scheme}$${PBKDF2_ITERATIONS}$${salt}$${hash}$extra`,
      `bcrypt$${PBKDF2_ITERATIONS}$${salt}$${hash}`,
    ]) {
      expect(await verifyPassword("pw-12345678", broken)).toBe(false);
    }
  });

  it("an unknown email costs the same PBKDF2 work as a wrong password", async () => {
    const email = `timing-${crypto.randomUUID()}@example.com`;
    const registered = await call("POST", "/api/v1/auth/register", {
      body: { email, password: "right password", displayName: "Timing" },
      headers: { "CF-Connecting-IP": `timing-${crypto.randomUUID()}` },
    });
    expect(registered.status).toBe(201);
    const derive = vi.spyOn(crypto.subtle, "deriveBits");
    const iterationsOf = async (loginEmail: string) => {
      derive.mockClear();
      const res = await call("POST", "/api/v1/auth/login", {
        body: { email: loginEmail, password: "wrong password" },
        headers: { "CF-Connecting-IP": `timing-${crypto.randomUUID()}` },
        // Any `vars` makes call() run the app in this isolate, where the spy on crypto.subtle is seen.
        vars: { ENVIRONMENT: env.ENVIRONMENT },
      });
      expect(res.status).toBe(401);
      return derive.mock.calls.map(([algorithm]) => (algorithm as { iterations?: number }).iterations);
    };
    expect(await iterationsOf(email)).toEqual([PBKDF2_ITERATIONS]);
    expect(await iterationsOf(`nobody-${crypto.randomUUID()}@example.com`)).toEqual([PBKDF2_ITERATIONS]);
  });
});
