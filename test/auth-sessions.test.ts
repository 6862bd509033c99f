import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PRODUCTION_WARNING } from "../src/lib/openapi";
import { call, expectError } from "./support/http";
import {
  changePassword,
  ip,
  loginSession,
  logoutAll,
  PASSWORD,
  refresh,
  registerSession,
  type SessionPair,
  uniqueEmail,
} from "./support/sessions";
import { seedUser } from "./support/users";

/** POST /api/v1/auth/logout-all and POST /api/v1/auth/password (API.md, auth table). */
const NEW_PASSWORD = "a much longer passphrase";

const login = (email: string, password: string) =>
  call("POST", "/api/v1/auth/login", { body: { email, password }, headers: ip() });
const me = (accessToken: string) => call("GET", "/api/v1/users/me", { token: accessToken });

/** Three sessions of one account: registration and two more sign-ins (three refresh-token families). */
async function threeSessions() {
  const first = await registerSession();
  return [first, await loginSession(first.user.email), await loginSession(first.user.email)] as const;
}

describe("POST /api/v1/auth/logout-all", () => {
  it("revokes every refresh-token family of the caller, its own included; access tokens still read until they expire", async () => {
    const [a, b, c] = await threeSessions();
    const other = await registerSession();
    const res = await logoutAll(b.accessToken);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      isSuccess: true,
      statusCode: 200,
      errors: null,
      data: { loggedOut: true, revokedSessions: 3 },
    });
    for (const session of [a, b, c]) expectError(await refresh(session.refreshToken), 401, "invalid_token");
    expect((await me(a.accessToken)).status).toBe(200);
    // Someone else's session is untouched.
    expect((await refresh(other.refreshToken)).status).toBe(200);
    // Signing in again starts a session that works.
    const again = await loginSession(a.user.email);
    expect((await refresh(again.refreshToken)).status).toBe(200);
  });

  it("again with the ended session's access token: 401 session_ended, and another live session still works", async () => {
    const session = await registerSession();
    expect((await logoutAll(session.accessToken)).json.data).toEqual({ loggedOut: true, revokedSessions: 1 });
    expectError(await logoutAll(session.accessToken), 401, "session_ended");
    const again = await loginSession(session.user.email);
    expect((await logoutAll(again.accessToken)).json.data).toEqual({ loggedOut: true, revokedSessions: 1 });
  });

  it("needs the access token; a body is not required", async () => {
    expectError(await call("POST", "/api/v1/auth/logout-all"), 401, "authentication_required");
    expectError(await call("POST", "/api/v1/auth/logout-all", { token: "nope" }), 401, "invalid_token");
    const user = await seedUser();
    expect((await call("POST", "/api/v1/auth/logout-all", { token: user.token })).json.data).toEqual({
      loggedOut: true,
      revokedSessions: 0,
    });
  });
});

describe("POST /api/v1/auth/password", () => {
  it("answers a fresh pair that works; every other session is revoked; the old password stops working", async () => {
    const [a, b, c] = await threeSessions();
    const res = await changePassword(b.accessToken, PASSWORD, NEW_PASSWORD);
    expect(res.status, res.text).toBe(200);
    const fresh = res.json.data as SessionPair;
    expect(fresh).toEqual({
      user: expect.objectContaining({ id: a.user.id, email: a.user.email }),
      accessToken: expect.any(String),
      refreshToken: expect.stringMatching(new RegExp(`^${a.user.id}\\.[A-Za-z0-9_-]{43}$`)),
      expiresIn: 900,
    });
    // Every refresh token from before, the caller's own family included, is 401 now.
    for (const session of [a, b, c]) expectError(await refresh(session.refreshToken), 401, "invalid_token");
    // The returned pair works: the access token reads, the refresh token rotates.
    expect((await me(fresh.accessToken)).json.data.id).toBe(a.user.id);
    const rotated = await refresh(fresh.refreshToken);
    expect(rotated.status).toBe(200);
    expect((await me(rotated.json.data.accessToken)).status).toBe(200);
    // Sign-in takes the new password only.
    expectError(await login(a.user.email, PASSWORD), 401, "invalid_credentials");
    expect((await login(a.user.email, NEW_PASSWORD)).status).toBe(200);
  });

  it("a wrong current password is 401 invalid_credentials and changes nothing", async () => {
    const [a, b] = await threeSessions();
    const res = expectError(await changePassword(a.accessToken, "not the password", NEW_PASSWORD), 401, "invalid_credentials");
    expect(res.errors[0]).toBe("Authentication required");
    expect((await refresh(b.refreshToken)).status).toBe(200);
    expect((await login(a.user.email, PASSWORD)).status).toBe(200);
    expectError(await login(a.user.email, NEW_PASSWORD), 401, "invalid_credentials");
  });

  it("a weak or missing new password is 400 validation_failed naming the field, and changes nothing", async () => {
    const session = await registerSession();
    const cases: [unknown, string][] = [
      [{ currentPassword: PASSWORD, newPassword: "short" }, "newPassword"],
      [{ currentPassword: PASSWORD, newPassword: "x".repeat(129) }, "newPassword"],
      [{ currentPassword: PASSWORD }, "newPassword"],
      [{ newPassword: NEW_PASSWORD }, "currentPassword"],
      [{ currentPassword: "x".repeat(129), newPassword: NEW_PASSWORD }, "currentPassword"],
      [{ currentPassword: PASSWORD, newPassword: 12345678 }, "newPassword"],
    ];
    for (const [body, field] of cases) {
      const res = expectError(
        await call("POST", "/api/v1/auth/password", { token: session.accessToken, body, headers: ip() }),
        400,
        "validation_failed",
      );
      expect(res.errors.slice(1).join("\n")).toMatch(new RegExp(`^${field}: `, "m"));
    }
    expect((await refresh(session.refreshToken)).status).toBe(200);
    expect((await login(session.user.email, PASSWORD)).status).toBe(200);
  });

  it("needs the access token", async () => {
    const body = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD };
    expectError(await call("POST", "/api/v1/auth/password", { body }), 401, "authentication_required");
  });

  it("two changes at once with the same current password: exactly one takes effect, the other is 401", async () => {
    const session = await registerSession(uniqueEmail("race"));
    const results = await Promise.all([
      changePassword(session.accessToken, PASSWORD, "first new passphrase"),
      changePassword(session.accessToken, PASSWORD, "second new passphrase"),
    ]);
    const statuses = results.map((res) => res.status).sort();
    expect(statuses).toEqual([200, 401]);
    const winner = results.findIndex((res) => res.status === 200);
    const loser = 1 - winner;
    // The loser read the password before the winner changed it (invalid_credentials), or after the
    // winner ended every session, its own included (session_ended): either way it changed nothing.
    expect(["invalid_credentials", "session_ended"]).toContain(results[loser]!.json.code);
    const passwords = ["first new passphrase", "second new passphrase"];
    expect((await login(session.user.email, passwords[winner]!)).status).toBe(200);
    expectError(await login(session.user.email, passwords[loser]!), 401, "invalid_credentials");
    // The winner's pair was not revoked by the loser.
    expect((await refresh(results[winner]!.json.data.refreshToken)).status).toBe(200);
  });

  it("is rate limited per account like sign-in: 429 with Retry-After and X-RateLimit-*", async () => {
    const session = await registerSession();
    const other = await registerSession();
    const vars = { RATE_LIMIT_LOGIN_PER_MINUTE: "2" };
    const attempt = (token: string) =>
      call("POST", "/api/v1/auth/password", {
        token,
        body: { currentPassword: "wrong password", newPassword: NEW_PASSWORD },
        headers: ip(),
        vars,
      });
    for (let i = 0; i < 2; i += 1) {
      const res = expectError(await attempt(session.accessToken), 401, "invalid_credentials");
      expect(res).toBeTruthy();
    }
    const limited = await attempt(session.accessToken);
    expectError(limited, 429, "rate_limited");
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(limited.headers.get("X-RateLimit-Limit")).toBe("2");
    // Even the right password waits: the limit is on attempts, not failures.
    const right = await call("POST", "/api/v1/auth/password", {
      token: session.accessToken,
      body: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      headers: ip(),
      vars,
    });
    expectError(right, 429, "rate_limited");
    expect((await login(session.user.email, PASSWORD)).status).toBe(200);
    // Another account has its own budget.
    expectError(await attempt(other.accessToken), 401, "invalid_credentials");
  });
});

describe("logout-all and password in the OpenAPI document", () => {
  it("have their operationIds, bearer security, bounded inputs and the production warning", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const logoutAllOp = doc.paths["/api/v1/auth/logout-all"].post;
    const passwordOp = doc.paths["/api/v1/auth/password"].post;
    expect(logoutAllOp.operationId).toBe("logOutAll");
    expect(passwordOp.operationId).toBe("changePassword");
    for (const op of [logoutAllOp, passwordOp]) {
      expect(op.security).toEqual([{ "JWT-auth": [] }]);
      expect(op.description.startsWith(PRODUCTION_WARNING)).toBe(true);
      expect(op.description).toContain("4001");
      expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(["200", "401", "500"]));
    }
    expect(Object.keys(passwordOp.responses)).toEqual(expect.arrayContaining(["400", "429"]));
    const body = doc.components.schemas.ChangePasswordRequest;
    expect(body.required).toEqual(["currentPassword", "newPassword"]);
    expect(body.properties.currentPassword).toMatchObject({ minLength: 1, maxLength: 128 });
    expect(body.properties.newPassword).toMatchObject({ minLength: 8, maxLength: 128 });
    expect(doc.components.schemas.LogoutAllResult.required).toEqual(["loggedOut", "revokedSessions"]);
  });

  it("the realtime route documents its close codes", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const description: string = doc.paths["/api/v1/realtime"].get.description;
    for (const text of [
      "`4001` `session_ended`",
      "`4003` `account_suspended`",
      "`4008` `too_many_connections`",
      "REALTIME_MAX_CONNECTIONS",
    ]) {
      expect(description).toContain(text);
    }
    const ticket = doc.paths["/api/v1/realtime"].get.parameters.find((p: { name: string }) => p.name === "ticket");
    expect(ticket.schema.maxLength).toBe(256);
    expect(env.REALTIME_MAX_CONNECTIONS).toBe("10");
  });
});
