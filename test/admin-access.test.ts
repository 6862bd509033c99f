import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { countingD1 } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { logoutAll, refresh, registerSession } from "./support/sessions";
import { seedUser, setOwnerRole } from "./support/users";

/**
 * The admin check (API.md "Admins"; src/services/admin-access.ts): asked of the caller's object,
 * the owner of role, status and sessions (ARCHITECTURE.md §11), on every admin request, whatever
 * the token's `role` claim or D1's `users` index says.
 */
const suspend = (token: string, userId: string, reason = "abuse") =>
  call("POST", `/api/v1/admin/users/${userId}/suspension`, { token, body: { reason } });
const reinstate = (token: string, userId: string) => call("DELETE", `/api/v1/admin/users/${userId}/suspension`, { token });
/** The role as its owner changes it (what `npm run admin` does, through its Workflow). */
const setRole = async (userId: string, role: "user" | "admin") => {
  expect((await setOwnerRole(userId, role))?.role).toBe(role);
};
/** The D1 index alone, written behind the owner's back: the admin check must not see it. */
const setIndexRole = (userId: string, role: "user" | "admin") =>
  env.DB.prepare("UPDATE users SET role = ? WHERE id = ?").bind(role, userId).run();

/** Every admin route, as one request each by `token` on `userId`. */
const adminRequests = (token: string, userId: string) => [
  call("GET", "/api/v1/admin/audit", { token }),
  call("GET", `/api/v1/admin/reconciliations/${userId}`, { token }),
  call("POST", `/api/v1/admin/wallets/${userId}/grants`, { token, body: { amount: 5, reason: "check" } }),
  suspend(token, userId),
  reinstate(token, userId),
];

describe("the admin check", () => {
  it("a suspended admin is refused on every admin route with 403 account_suspended", async () => {
    const boss = await seedUser({ role: "admin" });
    const suspendedAdmin = await seedUser({ role: "admin" });
    const target = await seedUser();
    expect((await suspend(boss.token, suspendedAdmin.id)).status).toBe(200);
    for (const res of await Promise.all(adminRequests(suspendedAdmin.token, target.id))) {
      expectError(res, 403, "account_suspended");
    }
    // Nothing was done on its behalf.
    expect((await call("GET", `/api/v1/users/${target.id}`, { token: boss.token })).json.data.status).toBe("active");
  });

  it("nobody lifts their own suspension: 403 insufficient_permissions, and the suspension stays", async () => {
    const boss = await seedUser({ role: "admin" });
    const suspendedAdmin = await seedUser({ role: "admin" });
    expect((await suspend(boss.token, suspendedAdmin.id)).status).toBe(200);
    const own = expectError(await reinstate(suspendedAdmin.token, suspendedAdmin.id), 403, "insufficient_permissions");
    expect(own.errors.join(" ")).toMatch(/own suspension/);
    expect((await call("GET", "/api/v1/users/me", { token: suspendedAdmin.token })).json.data.status).toBe("suspended");
    // An active admin may not "lift" theirs either; another admin lifts it.
    expectError(await reinstate(boss.token, boss.id), 403, "insufficient_permissions");
    expect((await reinstate(boss.token, suspendedAdmin.id)).status).toBe(200);
    expect((await call("GET", "/api/v1/admin/audit", { token: suspendedAdmin.token })).status).toBe(200);
  });

  it("the role is the owner's: a token that says admin stops working the moment the role is revoked, and the other way round", async () => {
    const former = await seedUser({ role: "admin" });
    expect((await call("GET", "/api/v1/admin/audit", { token: former.token })).status).toBe(200);
    await setRole(former.id, "user");
    expectError(await call("GET", "/api/v1/admin/audit", { token: former.token }), 403, "insufficient_permissions");
    // Made admin out of band (npm run admin): no new token needed.
    const promoted = await seedUser();
    expectError(await call("GET", "/api/v1/admin/audit", { token: promoted.token }), 403, "insufficient_permissions");
    await setRole(promoted.id, "admin");
    expect((await call("GET", "/api/v1/admin/audit", { token: promoted.token })).status).toBe(200);
  });

  it("D1's users.role is an index the check never reads: it says user for an admin, admin for a user, and the owner decides", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    await setIndexRole(admin.id, "user");
    await setIndexRole(user.id, "admin");
    expect((await call("GET", "/api/v1/admin/audit", { token: admin.token })).status).toBe(200);
    expectError(await call("GET", "/api/v1/admin/audit", { token: user.token }), 403, "insufficient_permissions");
    // The same for suspensions: the index says suspended, the owner says active (and the other way round).
    const boss = await seedUser({ role: "admin" });
    const suspended = await seedUser({ role: "admin" });
    expect((await suspend(boss.token, suspended.id)).status).toBe(200);
    await env.DB.prepare("UPDATE users SET status = 'active' WHERE id = ?").bind(suspended.id).run();
    await env.DB.prepare("UPDATE users SET status = 'suspended' WHERE id = ?").bind(admin.id).run();
    expectError(await call("GET", "/api/v1/admin/audit", { token: suspended.token }), 403, "account_suspended");
    expect((await call("GET", "/api/v1/admin/audit", { token: admin.token })).status).toBe(200);
  });

  it("the check makes no D1 query: refusals make none at all, and an admin's request only its route's own", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const suspendedAdmin = await seedUser({ role: "admin", status: "suspended" });
    const ended = await registerSession();
    await setRole(ended.user.id, "admin");
    expect((await logoutAll(ended.accessToken)).status).toBe(200);
    const refusals: [string, number, string][] = [
      [user.token, 403, "insufficient_permissions"],
      [suspendedAdmin.token, 403, "account_suspended"],
      [ended.accessToken, 401, "session_ended"],
    ];
    for (const [token, status, code] of refusals) {
      const { d1, roundTrips } = countingD1(env.DB);
      expectError(await call("GET", "/api/v1/admin/audit", { token, bindings: { DB: d1 } }), status, code);
      expect(roundTrips, code).toEqual([]);
    }
    const { d1, roundTrips } = countingD1(env.DB);
    expect((await call("GET", "/api/v1/admin/audit", { token: admin.token, bindings: { DB: d1 } })).status).toBe(200);
    expect(roundTrips).toHaveLength(1);
    expect(roundTrips[0]).toMatch(/from "admin_audit"/);
  });

  it("a non-admin is 403 insufficient_permissions before validation, suspended or not", async () => {
    const user = await seedUser();
    const suspendedUser = await seedUser({ status: "suspended" });
    for (const who of [user, suspendedUser]) {
      for (const res of await Promise.all(adminRequests(who.token, user.id))) expectError(res, 403, "insufficient_permissions");
      expectError(await call("GET", "/api/v1/admin/audit?limit=0", { token: who.token }), 403, "insufficient_permissions");
    }
  });

  it("an admin whose session ended is 401 session_ended on admin routes, and its token still reads elsewhere", async () => {
    const session = await registerSession();
    await setRole(session.user.id, "admin");
    const target = await seedUser();
    expect((await call("GET", "/api/v1/admin/audit", { token: session.accessToken })).status).toBe(200);
    expect((await logoutAll(session.accessToken)).status).toBe(200);
    for (const res of await Promise.all(adminRequests(session.accessToken, target.id))) {
      expectError(res, 401, "session_ended");
    }
    expect((await call("GET", "/api/v1/users/me", { token: session.accessToken })).status).toBe(200);
    const audit = await env.DB.prepare("SELECT COUNT(*) AS n FROM admin_audit WHERE actor_id = ?").bind(session.user.id).first();
    expect(audit?.n).toBe(0);
  });
});

describe("email visibility follows the caller's current role and status", () => {
  const emailsSeenBy = async (token: string, target: { id: string; email: string; displayName: string }) => {
    const profile = await call("GET", `/api/v1/users/${target.id}`, { token });
    const search = await call("GET", `/api/v1/users?search=${encodeURIComponent(target.email)}`, { token });
    const byName = await call("GET", `/api/v1/users?search=${encodeURIComponent(target.displayName)}`, { token });
    expect(profile.status).toBe(200);
    expect(search.json.data.items).toHaveLength(1);
    return [profile.json.data.email, search.json.data.items[0].email, byName.json.data.items[0]?.email];
  };

  it("a suspended admin sees no emails; reinstated, they do again; a demoted one sees none, whatever their token says", async () => {
    const boss = await seedUser({ role: "admin" });
    const admin = await seedUser({ role: "admin" });
    const target = await seedUser({ displayName: `Target ${crypto.randomUUID()}` });
    expect(await emailsSeenBy(admin.token, target)).toEqual([target.email, target.email, target.email]);
    expect((await suspend(boss.token, admin.id)).status).toBe(200);
    expect(await emailsSeenBy(admin.token, target)).toEqual([undefined, undefined, undefined]);
    // Their own profile still shows their own email.
    expect((await call("GET", `/api/v1/users/${admin.id}`, { token: admin.token })).json.data.email).toBe(admin.email);
    expect((await reinstate(boss.token, admin.id)).status).toBe(200);
    expect(await emailsSeenBy(admin.token, target)).toEqual([target.email, target.email, target.email]);
    await setRole(admin.id, "user");
    expect(await emailsSeenBy(admin.token, target)).toEqual([undefined, undefined, undefined]);
    // An operator's promotion shows them without a new token.
    const promoted = await seedUser();
    expect(await emailsSeenBy(promoted.token, target)).toEqual([undefined, undefined, undefined]);
    await setRole(promoted.id, "admin");
    expect(await emailsSeenBy(promoted.token, target)).toEqual([target.email, target.email, target.email]);
  });

  it("an admin whose session ended sees no emails", async () => {
    const session = await registerSession();
    await setRole(session.user.id, "admin");
    const target = await seedUser({ displayName: `Target ${crypto.randomUUID()}` });
    const admin = await refresh(session.refreshToken);
    expect(admin.status).toBe(200);
    const token = admin.json.data.accessToken;
    expect(await emailsSeenBy(token, target)).toEqual([target.email, target.email, target.email]);
    await logoutAll(token);
    expect(await emailsSeenBy(token, target)).toEqual([undefined, undefined, undefined]);
  });
});
