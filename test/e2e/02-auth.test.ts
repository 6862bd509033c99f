import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { api, assertError, assertOk, PASSWORD, raw, registerUser, uniqueEmail } from "./support/client.ts";

/** Sign-up, sign-in, sessions and profiles as a client app drives them, plus their error classes. */
describe("auth and users over HTTP", () => {
  it("registers, signs in, refreshes (rotating) and logs out", async () => {
    const alice = await registerUser("Alice");
    assert.equal(alice.user.displayName, "Alice");
    assert.equal(alice.user.email, alice.email.toLowerCase());
    assert.equal(alice.user.role, "user");
    assert.match(alice.user.id, /^[0-9a-f]{24}$/);
    assert.equal(alice.expiresIn, 900);

    const me = assertOk(await alice.client.GET("/api/v1/users/me"), 200);
    assert.equal(me.id, alice.id);

    const login = assertOk(
      await api().POST("/api/v1/auth/login", { body: { email: alice.email.toUpperCase(), password: PASSWORD } }),
      200,
    );
    assert.equal(login.user.id, alice.id);

    const refreshed = assertOk(await api().POST("/api/v1/auth/refresh", { body: { refreshToken: login.refreshToken } }), 200);
    assert.notEqual(refreshed.refreshToken, login.refreshToken);
    // The used token again: 401, and its whole family is revoked.
    assertError(await api().POST("/api/v1/auth/refresh", { body: { refreshToken: login.refreshToken } }), 401, "invalid_token");
    assertError(
      await api().POST("/api/v1/auth/refresh", { body: { refreshToken: refreshed.refreshToken } }),
      401,
      "invalid_token",
    );

    const logout = assertOk(await alice.client.POST("/api/v1/auth/logout", { body: { refreshToken: alice.refreshToken } }), 200);
    assert.equal(logout.loggedOut, true);
    assertError(await api().POST("/api/v1/auth/refresh", { body: { refreshToken: alice.refreshToken } }), 401, "invalid_token");
  });

  it("409 already_exists for a taken email, whatever its case", async () => {
    const bob = await registerUser("Bob");
    const again = await api().POST("/api/v1/auth/register", {
      body: { email: bob.email.toUpperCase(), password: PASSWORD, displayName: "Bob again" },
    });
    assertError(again, 409, "already_exists");
  });

  it("400 validation_failed names each bad field", async () => {
    const res = await api().POST("/api/v1/auth/register", {
      body: { email: "not-an-email", password: "short", displayName: "" },
    });
    const body = assertError(res, 400, "validation_failed");
    const details = body.errors?.slice(1).join("\n") ?? "";
    for (const field of ["email", "password", "displayName"]) assert.match(details, new RegExp(`^${field}: `, "m"));
  });

  it("401 invalid_credentials is the same for a wrong password and an unknown email", async () => {
    const carol = await registerUser("Carol");
    const wrong = await api().POST("/api/v1/auth/login", { body: { email: carol.email, password: "wrong password!" } });
    const unknown = await api().POST("/api/v1/auth/login", { body: { email: uniqueEmail("nobody"), password: PASSWORD } });
    const a = assertError(wrong, 401, "invalid_credentials");
    const b = assertError(unknown, 401, "invalid_credentials");
    assert.deepEqual(a.errors, b.errors);
  });

  it("401 authentication_required without a token, invalid_token with a bad one", async () => {
    assertError(await api().GET("/api/v1/users/me"), 401, "authentication_required");
    assertError(await api("not.a.jwt").GET("/api/v1/users/me"), 401, "invalid_token");
    const forged =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2NGQxNWY5ZTJlNmM4ZjRkNWExMjM0NTYiLCJyb2xlIjoiYWRtaW4ifQ.c2lnbmF0dXJl";
    assertError(await api(forged).GET("/api/v1/users/me"), 401, "invalid_token");
  });

  it("users: public profile, 404 user_not_found, 400 for a malformed id, search by prefix", async () => {
    const dave = await registerUser("Dave Searchable");
    const erin = await registerUser("Erin");
    const profile = assertOk(await erin.client.GET("/api/v1/users/{userId}", { params: { path: { userId: dave.id } } }), 200);
    assert.equal(profile.displayName, "Dave Searchable");
    assert.equal(profile.email, undefined, "email is private");
    assertError(
      await erin.client.GET("/api/v1/users/{userId}", { params: { path: { userId: "64d15f9e2e6c8f4d5a000000" } } }),
      404,
      "user_not_found",
    );
    assertError(
      await erin.client.GET("/api/v1/users/{userId}", { params: { path: { userId: "nope" } } }),
      400,
      "validation_failed",
    );
    const found = assertOk(await erin.client.GET("/api/v1/users", { params: { query: { search: "dave sea", limit: 10 } } }), 200);
    assert.ok(found.items.some((user) => user.id === dave.id));
  });

  it("403 insufficient_permissions: a user cannot suspend anyone", async () => {
    const frank = await registerUser("Frank");
    const res = await frank.client.POST("/api/v1/admin/users/{userId}/suspension", {
      params: { path: { userId: frank.id } },
      body: { reason: "self" },
    });
    assertError(res, 403, "insufficient_permissions");
  });

  it("429 rate_limited after 10 sign-in attempts for one email, with Retry-After", async () => {
    const grace = await registerUser("Grace");
    let limited: Awaited<ReturnType<typeof raw>> | undefined;
    for (let attempt = 0; attempt < 12 && !limited; attempt++) {
      const res = await raw("POST", "/api/v1/auth/login", {
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email: grace.email, password: "wrong password!" }),
      });
      if (res.status === 429) limited = res;
      else assertError(res, 401, "invalid_credentials");
    }
    assert.ok(limited, "no 429 after 12 attempts");
    assertError(limited, 429, "rate_limited");
    assert.match(limited.headers.get("Retry-After") ?? "", /^\d+$/);
  });

  it("logout-all revokes every session; a password change answers a new pair and revokes the rest", async () => {
    const hana = await registerUser("Hana");
    const laptop = assertOk(await api().POST("/api/v1/auth/login", { body: { email: hana.email, password: PASSWORD } }), 200);
    const everywhere = assertOk(await hana.client.POST("/api/v1/auth/logout-all"), 200);
    assert.deepEqual(everywhere, { loggedOut: true, revokedSessions: 2 });
    for (const refreshToken of [hana.refreshToken, laptop.refreshToken]) {
      assertError(await api().POST("/api/v1/auth/refresh", { body: { refreshToken } }), 401, "invalid_token");
    }

    const again = assertOk(await api().POST("/api/v1/auth/login", { body: { email: hana.email, password: PASSWORD } }), 200);
    const other = assertOk(await api().POST("/api/v1/auth/login", { body: { email: hana.email, password: PASSWORD } }), 200);
    const client = api(again.accessToken);
    assertError(
      await client.POST("/api/v1/auth/password", {
        body: { currentPassword: "wrong password!", newPassword: "brand new passphrase" },
      }),
      401,
      "invalid_credentials",
    );
    assertError(
      await client.POST("/api/v1/auth/password", { body: { currentPassword: PASSWORD, newPassword: "short" } }),
      400,
      "validation_failed",
    );
    const changed = assertOk(
      await client.POST("/api/v1/auth/password", { body: { currentPassword: PASSWORD, newPassword: "brand new passphrase" } }),
      200,
    );
    assert.equal(changed.user.id, hana.id);
    for (const refreshToken of [again.refreshToken, other.refreshToken]) {
      assertError(await api().POST("/api/v1/auth/refresh", { body: { refreshToken } }), 401, "invalid_token");
    }
    assertOk(await api(changed.accessToken).GET("/api/v1/users/me"), 200);
    assertOk(await api().POST("/api/v1/auth/refresh", { body: { refreshToken: changed.refreshToken } }), 200);
    assertError(
      await api().POST("/api/v1/auth/login", { body: { email: hana.email, password: PASSWORD } }),
      401,
      "invalid_credentials",
    );
    assertOk(await api().POST("/api/v1/auth/login", { body: { email: hana.email, password: "brand new passphrase" } }), 200);
  });
});
