import { env } from "cloudflare:workers";
import { sign } from "hono/jwt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { getConfig } from "../src/lib/config";
import { newId } from "../src/lib/ids";
import { JWT_ISSUER, jwtAudience, keyId, signAccessToken } from "../src/lib/jwt";
import { isUniqueViolation } from "../src/services/auth";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";
import { rowsOf } from "./support/wallets";

const PASSWORD = "correct horse battery";
const b64url = (text: string) => btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const uniqueEmail = (tag = "user") => `${tag}-${crypto.randomUUID()}@example.com`;
/** Each test its own client address, so the shared per-IP auth limit never spills between tests. */
const ip = () => ({
  "CF-Connecting-IP": `10.${Math.floor(Math.random() * 255)}.${Math.floor(Math.random() * 255)}.${Math.floor(Math.random() * 255)}`,
});

async function register(email = uniqueEmail(), displayName = "Alice", password = PASSWORD) {
  const res = await call("POST", "/api/v1/auth/register", { body: { email, password, displayName }, headers: ip() });
  expect(res.status, res.text).toBe(201);
  return res.json.data as { user: { id: string; email: string }; accessToken: string; refreshToken: string; expiresIn: number };
}

const login = (email: string, password: string, headers = ip()) =>
  call("POST", "/api/v1/auth/login", { body: { email, password }, headers });
const refresh = (refreshToken: string) => call("POST", "/api/v1/auth/refresh", { body: { refreshToken }, headers: ip() });

describe("register", () => {
  it("recognizes the email race's unique violation as D1 raises it and as Drizzle wraps it (so the loser gets 409, not 500)", () => {
    const d1 = new Error("D1_ERROR: UNIQUE constraint failed: users.email: SQLITE_CONSTRAINT");
    expect(isUniqueViolation(d1)).toBe(true);
    expect(isUniqueViolation(new Error('Failed query: insert into "users" …', { cause: d1 }))).toBe(true);
    expect(isUniqueViolation(new Error("Failed query", { cause: new Error("D1_ERROR: no such table") }))).toBe(false);
    expect(isUniqueViolation("UNIQUE constraint failed")).toBe(false);
  });

  it("creates the user and a session: 201 {user, accessToken, refreshToken, expiresIn}", async () => {
    const email = uniqueEmail("New");
    const res = await call("POST", "/api/v1/auth/register", {
      body: { email: `  ${email}  `, password: PASSWORD, displayName: "  Alice Example  " },
      headers: ip(),
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ isSuccess: true, statusCode: 201, errors: null });
    const { user, accessToken, refreshToken, expiresIn } = res.json.data;
    expect(user).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{24}$/),
      displayName: "Alice Example",
      role: "user",
      status: "active",
      createdAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
      email: email.toLowerCase(),
    });
    expect(accessToken.split(".")).toHaveLength(3);
    // Opaque to clients; its owner's id in front routes it to the user's object (services/auth.ts).
    expect(refreshToken).toMatch(new RegExp(`^${user.id}\\.[A-Za-z0-9_-]{43}$`));
    expect(expiresIn).toBe(900);
    const me = await call("GET", "/api/v1/users/me", { token: accessToken });
    expect(me.status).toBe(200);
    expect(me.json.data).toEqual(user);
  });

  it("opens the new user's wallet with the SIGNUP_CREDITS grant", async () => {
    // 37 at registration; the read below runs with the default (100), so it shows 37 only if
    // registration itself opened the wallet (a wallet opened lazily by the read would get 100).
    const res = await call("POST", "/api/v1/auth/register", {
      body: { email: uniqueEmail("wallet"), password: PASSWORD, displayName: "Wallet" },
      headers: ip(),
      vars: { SIGNUP_CREDITS: "37" },
    });
    expect(res.status).toBe(201);
    const wallet = await call("GET", "/api/v1/wallets/me", { token: res.json.data.accessToken });
    expect(wallet.status, wallet.text).toBe(200);
    expect(wallet.json.data).toMatchObject({ userId: res.json.data.user.id, balance: 37 });
    const ledger = await call("GET", "/api/v1/wallets/me/transactions", { token: res.json.data.accessToken });
    expect(ledger.json.data.items).toMatchObject([{ kind: "grant", amount: 37, balanceAfter: 37 }]);
  });

  it("stores a PBKDF2 hash with its parameters, and only the SHA-256 of refresh tokens", async () => {
    const session = await register();
    const row = await env.DB.prepare("SELECT password_hash FROM users WHERE id = ?")
      .bind(session.user.id)
      .first<{ password_hash: string }>();
    expect(row?.password_hash).toMatch(/^pbkdf2-sha256\$100000\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(row?.password_hash).not.toContain(PASSWORD);
    // The user's object holds the sessions (durable-objects/wallet/sessions.ts).
    const tokens = await rowsOf(session.user.id, "SELECT token_hash FROM session_tokens");
    expect(tokens).toHaveLength(1);
    expect(tokens[0]?.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(tokens)).not.toContain(session.refreshToken.split(".")[1]);
  });

  it("the same email in any letter case is 409 already_exists", async () => {
    const email = uniqueEmail("dup");
    await register(email);
    const again = await call("POST", "/api/v1/auth/register", {
      body: { email: email.toUpperCase(), password: PASSWORD, displayName: "Other" },
      headers: ip(),
    });
    expectError(again, 409, "already_exists");
  });

  it("concurrent registrations of one email: exactly one wins", async () => {
    const email = uniqueEmail("race");
    const results = await Promise.all(
      [email, email.toUpperCase()].map((e) =>
        call("POST", "/api/v1/auth/register", { body: { email: e, password: PASSWORD, displayName: "Racer" }, headers: ip() }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
  });

  it("emails in ADMIN_EMAILS register as admins", async () => {
    const email = uniqueEmail("boss");
    const res = await call("POST", "/api/v1/auth/register", {
      body: { email: email.toUpperCase(), password: PASSWORD, displayName: "Boss" },
      headers: ip(),
      vars: { ADMIN_EMAILS: `someone@example.com, ${email}` },
    });
    expect(res.status).toBe(201);
    expect(res.json.data.user.role).toBe("admin");
    // The account's owner (the user's object) opened it as an admin: the admin check asks only it.
    expect((await call("GET", "/api/v1/admin/audit", { token: res.json.data.accessToken })).status).toBe(200);
  });

  it("validation: one `field: message` per problem, limits of API.md", async () => {
    const bad = await call("POST", "/api/v1/auth/register", {
      body: { email: "not-an-email", password: "short", displayName: "   " },
      headers: ip(),
    });
    const { errors } = expectError(bad, 400, "validation_failed");
    expect(errors[0]).toBe("Validation failed");
    expect(errors).toContain("email: must be a valid email address");
    expect(errors).toContain("password: must be at least 8 characters");
    expect(errors).toContain("displayName: must not be blank");

    const missing = expectError(
      await call("POST", "/api/v1/auth/register", { body: {}, headers: ip() }),
      400,
      "validation_failed",
    );
    expect(missing.errors).toEqual([
      "Validation failed",
      "email: is required",
      "password: is required",
      "displayName: is required",
    ]);

    const long = await call("POST", "/api/v1/auth/register", {
      body: { email: `${"a".repeat(250)}@x.io`, password: "p".repeat(129), displayName: "d".repeat(65) },
      headers: ip(),
    });
    expect(expectError(long, 400, "validation_failed").errors).toEqual([
      "Validation failed",
      "email: must be at most 254 characters",
      "password: must be at most 128 characters",
      "displayName: must be at most 64 characters",
    ]);

    const types = await call("POST", "/api/v1/auth/register", {
      body: { email: 1, password: PASSWORD, displayName: "x" },
      headers: ip(),
    });
    expect(expectError(types, 400, "validation_failed").errors).toContain("email: must be a string");

    // Exactly at the limits is fine.
    const edge = await call("POST", "/api/v1/auth/register", {
      body: {
        email: `${crypto.randomUUID().replace(/-/g, "").repeat(8).slice(0, 242)}@example.com`,
        password: "p".repeat(128),
        displayName: "d".repeat(64),
      },
      headers: ip(),
    });
    expect(edge.status, edge.text).toBe(201);
    expect(edge.json.data.user.email).toHaveLength(254);
  });
});

describe("login", () => {
  it("signs in with the right password (any email case): 200 with a new session", async () => {
    const email = uniqueEmail("login");
    const registered = await register(email);
    const res = await login(email.toUpperCase(), PASSWORD);
    expect(res.status).toBe(200);
    expect(res.json.statusCode).toBe(200);
    expect(res.json.data.user).toMatchObject({ id: registered.user.id, email });
    expect(res.json.data.refreshToken).not.toBe(registered.refreshToken);
    expect(res.json.data.expiresIn).toBe(900);
    expect((await call("GET", "/api/v1/users/me", { token: res.json.data.accessToken })).status).toBe(200);
  });

  it("a wrong password and an unknown email get the same 401 invalid_credentials body", async () => {
    const email = uniqueEmail("victim");
    await register(email);
    const wrong = await login(email, "not the password");
    const unknown = await login(uniqueEmail("nobody"), "not the password");
    const seeded = await seedUser();
    const noPassword = await login(seeded.email, "seeded$cannot-sign-in");
    for (const res of [wrong, unknown, noPassword]) expectError(res, 401, "invalid_credentials");
    const strip = (json: Record<string, unknown>) => ({ ...json, timestamp: undefined });
    expect(strip(wrong.json)).toEqual(strip(unknown.json));
    expect(strip(wrong.json)).toEqual(strip(noPassword.json));
    expect(wrong.json.errors).toEqual(["Authentication required", "Email or password is incorrect"]);
  });

  it("a short password is a wrong password (401), not a hint about the policy", async () => {
    expectError(await login(uniqueEmail(), "x"), 401, "invalid_credentials");
    expect(expectError(await login("nope", ""), 400, "validation_failed").errors).toEqual([
      "Validation failed",
      "email: must be a valid email address",
      "password: must not be empty",
    ]);
  });

  it("suspended users can still sign in", async () => {
    const email = uniqueEmail("suspended");
    const session = await register(email);
    const admin = await seedUser({ role: "admin" });
    const suspended = await call("POST", `/api/v1/admin/users/${session.user.id}/suspension`, {
      token: admin.token,
      body: { reason: "test" },
    });
    expect(suspended.status).toBe(200);
    const res = await login(email, PASSWORD);
    expect(res.status).toBe(200);
    expect(res.json.data.user.status).toBe("suspended");
  });
});

describe("refresh tokens", () => {
  it("rotate: the new pair works, the old refresh token stops working", async () => {
    const first = await register();
    const res = await refresh(first.refreshToken);
    expect(res.status).toBe(200);
    const second = res.json.data;
    expect(second.user.id).toBe(first.user.id);
    expect(second.user.email).toBe(first.user.email);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.expiresIn).toBe(900);
    expect((await call("GET", "/api/v1/users/me", { token: second.accessToken })).status).toBe(200);
    // The access token issued before the refresh stays valid until it expires.
    expect((await call("GET", "/api/v1/users/me", { token: first.accessToken })).status).toBe(200);
    const third = await refresh(second.refreshToken);
    expect(third.status).toBe(200);
  });

  it("presenting a used token revokes its whole family, not other sessions", async () => {
    const email = uniqueEmail("reuse");
    const first = await register(email);
    const other = (await login(email, PASSWORD)).json.data;
    const second = (await refresh(first.refreshToken)).json.data;

    const reuse = await refresh(first.refreshToken);
    expect(expectError(reuse, 401, "invalid_token").errors[1]).toBe("The refresh token is not valid; sign in again");
    // The legitimate holder's newer token is revoked too: the thief and the owner both sign in again.
    expectError(await refresh(second.refreshToken), 401, "invalid_token");
    // Another sign-in is another family.
    expect((await refresh(other.refreshToken)).status).toBe(200);
  });

  it("two concurrent refreshes with one token: one wins, and the race counts as reuse", async () => {
    // Several rounds: the interleavings differ (the loser may revoke before or after the winner stores its new token).
    for (let round = 0; round < 5; round++) {
      const first = await register();
      const results = await Promise.all([refresh(first.refreshToken), refresh(first.refreshToken)]);
      expect(results.map((r) => r.status).sort()).toEqual([200, 401]);
      const winner = results.find((r) => r.status === 200);
      expectError(await refresh(winner?.json.data.refreshToken), 401, "invalid_token");
    }
  });

  it("a token stored after its family was revoked is refused (the loser of a race revoked first)", async () => {
    const session = await register();
    const [family] = await rowsOf(session.user.id, "SELECT family_id FROM session_families");
    expect(
      (await call("POST", "/api/v1/auth/logout", { token: session.accessToken, body: { refreshToken: session.refreshToken } }))
        .status,
    ).toBe(200);
    // A fresh, unused token of the family written after that revocation (the old D1 design let a
    // racing refresh do this): the family's revocation still refuses it.
    const late = `${session.user.id}.${"L".repeat(43)}`;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(late)));
    const hash = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    await rowsOf(
      session.user.id,
      `INSERT INTO session_tokens (token_hash, family_id, expires_at) VALUES ('${hash}', '${family?.family_id}', ${Date.now() + 60_000})`,
    );
    expectError(await refresh(late), 401, "invalid_token");
  });

  it("unknown, expired and malformed refresh tokens", async () => {
    const session = await register();
    for (const token of [
      "A".repeat(43),
      `${session.user.id}.${"A".repeat(43)}`,
      `${newId()}.${"A".repeat(43)}`,
      `${session.user.id.toUpperCase()}.${session.refreshToken.split(".")[1]}`,
      `${session.refreshToken}.x`,
      `../${session.refreshToken}`,
    ]) {
      expectError(await refresh(token), 401, "invalid_token");
    }
    await rowsOf(session.user.id, `UPDATE session_tokens SET expires_at = ${Date.now() - 1}`);
    expectError(await refresh(session.refreshToken), 401, "invalid_token");
    expect(
      expectError(await call("POST", "/api/v1/auth/refresh", { body: {}, headers: ip() }), 400, "validation_failed").errors,
    ).toEqual(["Validation failed", "refreshToken: is required"]);
  });
});

describe("logout", () => {
  it("revokes the family of the refresh token; idempotent", async () => {
    const session = await register();
    const rotated = (await refresh(session.refreshToken)).json.data;
    const res = await call("POST", "/api/v1/auth/logout", {
      token: rotated.accessToken,
      body: { refreshToken: rotated.refreshToken },
    });
    expect(res.status).toBe(200);
    expect(res.json.data).toEqual({ loggedOut: true });
    expectError(await refresh(rotated.refreshToken), 401, "invalid_token");
    const again = await call("POST", "/api/v1/auth/logout", {
      token: rotated.accessToken,
      body: { refreshToken: rotated.refreshToken },
    });
    expect(again.status).toBe(200);
  });

  it("needs the access token, and only signs out the caller's own sessions", async () => {
    const victim = await register();
    const attacker = await register();
    expectError(
      await call("POST", "/api/v1/auth/logout", { body: { refreshToken: victim.refreshToken } }),
      401,
      "authentication_required",
    );
    expectError(
      await call("POST", "/api/v1/auth/logout", { token: attacker.accessToken, body: { refreshToken: victim.refreshToken } }),
      401,
      "invalid_token",
    );
    expect((await refresh(victim.refreshToken)).status).toBe(200);
  });
});

describe("access tokens", () => {
  const config = getConfig(env);
  const base = (sub: string) => {
    const iat = Math.floor(Date.now() / 1000);
    return {
      sub,
      role: "user",
      sid: newId(),
      iat,
      exp: iat + 900,
      iss: JWT_ISSUER,
      aud: jwtAudience("local"),
      jti: crypto.randomUUID(),
    };
  };
  /** Signed with the server's key and its kid in the header, as the server signs, but with any claims and algorithm. */
  const signed = async (claims: Record<string, unknown>, alg: "HS256" | "HS512" = "HS256") =>
    sign(claims, { kty: "oct", k: b64url(config.jwtSecret), alg, kid: await keyId(config.jwtSecret) });
  const me = (token: string) => call("GET", "/api/v1/users/me", { token });

  it("a valid token works; a missing one is authentication_required; a malformed header is invalid_token", async () => {
    const user = await seedUser();
    expect((await me(user.token)).status).toBe(200);
    expectError(await call("GET", "/api/v1/users/me"), 401, "authentication_required");
    expectError(
      await call("GET", "/api/v1/users/me", { headers: { Authorization: `Basic ${btoa("a:b")}` } }),
      401,
      "invalid_token",
    );
    expectError(await me("not-a-jwt"), 401, "invalid_token");
  });

  it("tampered payload or signature is invalid_token", async () => {
    const user = await seedUser();
    const admin = await seedUser({ role: "admin" });
    const [header, payload, signature] = user.token.split(".") as [string, string, string];
    const flipped = `${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`;
    expectError(await me(`${header}.${payload}.${flipped}`), 401, "invalid_token");
    // Someone else's payload under my signature (e.g. to become admin).
    const adminPayload = admin.token.split(".")[1];
    expectError(await me(`${header}.${adminPayload}.${signature}`), 401, "invalid_token");
    // Another key under the kid of the server's key.
    const forged = await sign(
      { ...base(user.id), role: "admin" },
      { kty: "oct", k: b64url("some-other-secret-of-enough-length!!"), alg: "HS256", kid: await keyId(config.jwtSecret) },
    );
    expectError(await me(forged), 401, "invalid_token");
  });

  it("expired is token_expired", async () => {
    const user = await seedUser();
    const expired = await signAccessToken(
      config,
      { id: user.id, role: "user", sessionId: user.sessionId },
      Date.now() - 16 * 60 * 1000,
    );
    const res = expectError(await me(expired), 401, "token_expired");
    expect(res.errors[0]).toBe("Authentication required");
  });

  it("alg none, another algorithm, wrong audience or issuer are invalid_token", async () => {
    const user = await seedUser();
    const b64 = (value: unknown) => btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const none = `${b64({ alg: "none", typ: "JWT" })}.${b64(base(user.id))}.`;
    expectError(await me(none), 401, "invalid_token");
    const hs512 = await signed(base(user.id), "HS512");
    expectError(await me(hs512), 401, "invalid_token");
    const wrongAudience = await signed({ ...base(user.id), aud: "someone-else" });
    expectError(await me(wrongAudience), 401, "invalid_token");
    const wrongIssuer = await signed({ ...base(user.id), iss: "someone-else" });
    expectError(await me(wrongIssuer), 401, "invalid_token");
    // The control: the same claims with the right audience and issuer pass.
    expect((await me(await signed(base(user.id)))).status).toBe(200);
  });

  it("a token not valid yet (nbf), issued in the future (iat), of another type, with crit, or an array audience", async () => {
    const user = await seedUser();
    const later = Math.floor(Date.now() / 1000) + 300;
    expectError(await me(await signed({ ...base(user.id), nbf: later })), 401, "invalid_token");
    expectError(await me(await signed({ ...base(user.id), iat: later })), 401, "invalid_token");
    expectError(await me(await signed({ ...base(user.id), exp: "never" })), 401, "invalid_token");
    const key = { kty: "oct", k: b64url(config.jwtSecret), alg: "HS256" as const, kid: await keyId(config.jwtSecret) };
    /** Signed by hand, so that the header can say anything. */
    const withHeader = async (header: Record<string, unknown>) => {
      const b64 = (value: unknown) => btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      const input = `${b64({ alg: "HS256", kid: key.kid, ...header })}.${b64(base(user.id))}`;
      const hmac = await crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(config.jwtSecret),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign"],
      );
      const signature = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(input)));
      return `${input}.${btoa(String.fromCharCode(...signature))
        .replace(/\+/g, "-")
        .replace(/\//g, "_")
        .replace(/=+$/, "")}`;
    };
    expectError(await me(await withHeader({ typ: "JWE" })), 401, "invalid_token");
    expectError(await me(await withHeader({ crit: ["exp"] })), 401, "invalid_token");
    // The controls: a hand-signed header without typ, or with typ "jwt", and a list of audiences naming this API pass.
    expect((await me(await withHeader({}))).status).toBe(200);
    expect((await me(await withHeader({ typ: "application/jwt" }))).status).toBe(200);
    expect((await me(await signed({ ...base(user.id), aud: ["another-api", jwtAudience("local")] }))).status).toBe(200);
    expect((await me(await signed({ ...base(user.id), nbf: later - 600 }))).status).toBe(200);
  });

  it("a token without its session (`sid`) or with a malformed one is invalid_token", async () => {
    const user = await seedUser();
    const { sid: _sid, ...withoutSession } = base(user.id);
    expectError(await me(await signed(withoutSession)), 401, "invalid_token");
    expectError(await me(await signed({ ...base(user.id), sid: "not-a-session" })), 401, "invalid_token");
  });
});

describe("rate limits on auth", () => {
  it("failed sign-ins per email and address: the attempt over the limit is 429 with Retry-After and X-RateLimit-*", async () => {
    const email = uniqueEmail("brute");
    await register(email);
    const vars = { RATE_LIMIT_LOGIN_PER_MINUTE: "3", RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: "100" };
    const address = ip();
    const attempt = (password: string, from = address, as = email) =>
      call("POST", "/api/v1/auth/login", { body: { email: as, password }, headers: from, vars });
    // A right password is not a failure: it counts nothing.
    const ok = await attempt(PASSWORD);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("X-RateLimit-Limit")).toBe("3");
    expect(ok.headers.get("X-RateLimit-Remaining")).toBe("3");
    expect(ok.headers.get("Retry-After")).toBeNull();
    const remaining: (string | null)[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await attempt("wrong password");
      expectError(res, 401, "invalid_credentials");
      expect(res.headers.get("X-RateLimit-Limit")).toBe("3");
      remaining.push(res.headers.get("X-RateLimit-Remaining"));
      expect(Number(res.headers.get("X-RateLimit-Reset"))).toBeGreaterThanOrEqual(1);
    }
    expect(remaining).toEqual(["2", "1", "0"]);
    // Over the limit, even the right password from that address is refused.
    const limited = await attempt(PASSWORD);
    const body = expectError(limited, 429, "rate_limited");
    expect(body.errors[0]).toBe("Too many requests");
    const retryAfter = Number(limited.headers.get("Retry-After"));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
    expect(limited.headers.get("X-RateLimit-Limit")).toBe("3");
    expect(limited.headers.get("X-RateLimit-Remaining")).toBe("0");
    expect(limited.headers.get("X-RateLimit-Reset")).toBe(String(retryAfter));
    // The letter case of the email does not open a new count; another email from that address has its own.
    expectError(await attempt(PASSWORD, address, email.toUpperCase()), 429, "rate_limited");
    const other = uniqueEmail("bystander");
    await register(other);
    expect((await attempt(PASSWORD, address, other)).status).toBe(200);
  });

  it("a stranger's failed sign-ins do not lock the owner out from another address; the per-email ceiling still bites", async () => {
    const email = uniqueEmail("owner");
    await register(email);
    const vars = { RATE_LIMIT_LOGIN_PER_MINUTE: "3", RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: "7" };
    const attempt = (password: string, from: Record<string, string>) =>
      call("POST", "/api/v1/auth/login", { body: { email, password }, headers: from, vars });
    // The stranger guesses from one IPv6 /64, changing the rest of its address: one count.
    const stranger = (n: number) => ({ "CF-Connecting-IP": `2001:db8:5:7:${n.toString(16)}::1` });
    for (let i = 0; i < 3; i++) expectError(await attempt("wrong password", stranger(i)), 401, "invalid_credentials");
    expectError(await attempt("wrong password", stranger(99)), 429, "rate_limited");
    // The owner, elsewhere, signs in; a right password is not counted against anyone.
    const home = ip();
    for (let i = 0; i < 3; i++) expect((await attempt(PASSWORD, home)).status).toBe(200);
    // Guesses spread over addresses reach the per-email ceiling (7): then every address waits.
    for (let i = 0; i < 4; i++) expectError(await attempt("wrong password", ip()), 401, "invalid_credentials");
    const ceiling = await attempt(PASSWORD, home);
    expectError(ceiling, 429, "rate_limited");
    expect(Number(ceiling.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(ceiling.headers.get("X-RateLimit-Limit")).toBe("7");
    // A refused attempt counted nothing at the owner's address: it is still clear there.
    const { RATE_LIMITER } = env;
    const homeCount = await RATE_LIMITER.get(RATE_LIMITER.idFromName(`signInAddress:${email} ${home["CF-Connecting-IP"]}`)).hit(
      1_000,
    );
    expect(homeCount.remaining).toBe(999);
  });

  it("the owner signs in through a 50-a-minute storm of wrong guesses (from 5 addresses, or one IPv6 /48) with their device token", async () => {
    const email = uniqueEmail("stormed");
    const registered = await call("POST", "/api/v1/auth/register", {
      body: { email, password: PASSWORD, displayName: "Stormed" },
      headers: ip(),
    });
    expect(registered.status).toBe(201);
    // Signed in on a phone earlier: its device token (registration answers one too).
    const phone = await login(email, PASSWORD);
    expect(phone.status).toBe(200);
    const deviceToken: string = phone.json.data.deviceToken;
    expect(deviceToken).toMatch(/^dt1\./);
    expect(registered.json.data.deviceToken).toMatch(/^dt1\./);
    const attempt = (password: string, from: Record<string, string>, token?: string) =>
      call("POST", "/api/v1/auth/login", { body: { email, password, ...(token ? { deviceToken: token } : {}) }, headers: from });

    // The storm, at the defaults: 10 wrong guesses from each of five /64s of one IPv6 /48 = 50 a minute.
    const site = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}`;
    const storm = await Promise.all(
      Array.from({ length: 50 }, (_, i) => attempt("wrong password", { "CF-Connecting-IP": `${site}:${i % 5}::${i + 1}` })),
    );
    for (const res of storm) expectError(res, 401, "invalid_credentials");
    // The per-email ceiling is full: a sign-in with no device token is refused, even the right password ...
    expectError(await attempt(PASSWORD, ip()), 429, "rate_limited");
    // ... but the owner's device gets through, from wherever they are now.
    const owner = await attempt(PASSWORD, ip(), deviceToken);
    expect(owner.status, owner.text).toBe(200);
    expect(owner.json.data.user.email).toBe(email);
    // A new device token from that sign-in works too; a token of another email, or a forged one, counts as none.
    expect((await attempt(PASSWORD, ip(), owner.json.data.deviceToken)).status).toBe(200);
    const otherEmail = uniqueEmail("other");
    const other = await call("POST", "/api/v1/auth/register", {
      body: { email: otherEmail, password: PASSWORD, displayName: "Other" },
      headers: ip(),
    });
    expectError(await attempt(PASSWORD, ip(), other.json.data.deviceToken), 429, "rate_limited");
    // One bit of the MAC's middle flipped.
    const at = deviceToken.length - 10;
    const forged = `${deviceToken.slice(0, at)}${deviceToken[at] === "A" ? "B" : "A"}${deviceToken.slice(at + 1)}`;
    expectError(await attempt(PASSWORD, ip(), forged), 429, "rate_limited");
    // A stolen token buys no more than one address's guesses: 10 failures on it, then it waits too.
    for (let i = 0; i < 10; i++) expectError(await attempt("wrong password", ip(), deviceToken), 401, "invalid_credentials");
    const spent = await attempt(PASSWORD, ip(), deviceToken);
    expectError(spent, 429, "rate_limited");
    expect(spent.headers.get("X-RateLimit-Limit")).toBe("10");
    // The other token (another sign-in of the owner's) is untouched by that.
    expect((await attempt(PASSWORD, ip(), owner.json.data.deviceToken)).status).toBe(200);
  });

  it("per client IP across register, login and refresh", async () => {
    const address = ip();
    const vars = { RATE_LIMIT_AUTH_IP_PER_MINUTE: "2" };
    expectError(
      await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: "x".repeat(43) }, headers: address, vars }),
      401,
      "invalid_token",
    );
    expectError(
      await call("POST", "/api/v1/auth/login", { body: { email: uniqueEmail(), password: "whatever1" }, headers: address, vars }),
      401,
      "invalid_credentials",
    );
    const limited = await call("POST", "/api/v1/auth/register", {
      body: { email: uniqueEmail(), password: PASSWORD, displayName: "Late" },
      headers: address,
      vars,
    });
    expectError(limited, 429, "rate_limited");
    expect(limited.headers.get("X-RateLimit-Limit")).toBe("2");
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    // The refused registration created nothing.
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM users WHERE display_name = 'Late'").first<{ n: number }>();
    expect(count?.n).toBe(0);
    // Another address is unaffected.
    expect(
      (await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: "x".repeat(43) }, headers: ip(), vars })).status,
    ).toBe(401);
  });
});

describe("secrets stay secret", () => {
  afterEach(() => vi.restoreAllMocks());

  it("passwords and tokens never appear in a log line, and no response carries a password hash", async () => {
    const lines: string[] = [];
    for (const method of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        lines.push(args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg))).join(" "));
      });
    }
    const email = uniqueEmail("secret");
    const password = `Pw-${crypto.randomUUID()}`;
    const responses: string[] = [];
    const registered = await call("POST", "/api/v1/auth/register", {
      body: { email, password, displayName: "Secret" },
      headers: ip(),
    });
    responses.push(registered.text);
    const session = registered.json.data;
    const loggedIn = await login(email, password);
    responses.push(loggedIn.text);
    responses.push((await login(email, `${password}-wrong`)).text);
    const refreshed = await refresh(loggedIn.json.data.refreshToken);
    responses.push(refreshed.text);
    responses.push((await refresh(loggedIn.json.data.refreshToken)).text);
    responses.push((await call("GET", "/api/v1/users/me", { token: session.accessToken })).text);
    responses.push((await call("GET", `/api/v1/users?search=${encodeURIComponent(email)}`, { token: session.accessToken })).text);

    const secrets = [
      password,
      session.accessToken,
      session.refreshToken,
      loggedIn.json.data.accessToken,
      loggedIn.json.data.refreshToken,
      refreshed.json.data.accessToken,
      refreshed.json.data.refreshToken,
    ];
    const logged = lines.join("\n");
    for (const secret of secrets) expect(logged).not.toContain(secret);
    for (const text of responses) {
      expect(text).not.toContain(password);
      expect(text).not.toContain("pbkdf2");
      expect(text).not.toMatch(/passwordHash|password_hash/);
    }
  });
});

describe("CORS", () => {
  it("answers preflights and exposes the documented headers", async () => {
    const preflight = await call("OPTIONS", "/api/v1/auth/login", {
      headers: {
        Origin: "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(preflight.headers.get("Access-Control-Allow-Headers")).toBe("Authorization,Content-Type,Idempotency-Key,X-Request-Id");
    expect(preflight.headers.get("Access-Control-Allow-Methods")).toContain("DELETE");
    expect(preflight.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(preflight.headers.get("X-Request-Id")).toBeTruthy();

    const res = await call("GET", "/health", { headers: { Origin: "https://app.example.com" } });
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const exposed = res.headers.get("Access-Control-Expose-Headers") ?? "";
    for (const name of [
      "X-Request-Id",
      "Retry-After",
      "X-RateLimit-Limit",
      "X-RateLimit-Remaining",
      "X-RateLimit-Reset",
      "Idempotent-Replayed",
    ]) {
      expect(exposed).toContain(name);
    }
    // Error responses carry CORS too, so browsers can read them.
    const error = await call("GET", "/api/v1/users/me", { headers: { Origin: "https://app.example.com" } });
    expect(error.status).toBe(401);
    expect(error.headers.get("Access-Control-Allow-Origin")).toBe("*");
  });

  it("with a list of origins, only those are allowed", async () => {
    const vars = { CORS_ORIGINS: "https://app.example.com, https://admin.example.com" };
    const allowed = await call("GET", "/health", { headers: { Origin: "https://admin.example.com" }, vars });
    expect(allowed.headers.get("Access-Control-Allow-Origin")).toBe("https://admin.example.com");
    expect(allowed.headers.get("Vary")).toContain("Origin");
    const refused = await call("GET", "/health", { headers: { Origin: "https://evil.example.com" }, vars });
    expect(refused.headers.get("Access-Control-Allow-Origin")).toBeNull();
    const none = await call("GET", "/health", { headers: { Origin: "https://app.example.com" }, vars: { CORS_ORIGINS: "" } });
    expect(none.headers.get("Access-Control-Allow-Origin")).toBeNull();
    // A preflight from an origin not on the list is answered without the allow headers' origin.
    const refusedPreflight = await call("OPTIONS", "/api/v2/messages", {
      headers: { Origin: "https://evil.example.com", "Access-Control-Request-Method": "POST" },
      vars,
    });
    expect(refusedPreflight.status).toBe(204);
    expect(refusedPreflight.headers.get("Access-Control-Allow-Origin")).toBeNull();
    expect(refusedPreflight.headers.get("Vary")).toContain("Origin");
  });
});
