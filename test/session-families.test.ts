import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SESSIONS_SQL } from "../src/durable-objects/wallet/sessions";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { purgeExpired } from "../src/services/maintenance";
import { countingD1 } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { changePassword, ip, loginSession, logout, logoutAll, PASSWORD, refresh, registerSession } from "./support/sessions";
import { seedUser, setOwnerRole } from "./support/users";
import { balanceOf, inWallet, rowsOf, seedWalletUser, transfer } from "./support/wallets";

/**
 * Sessions owned by the user's object (ARCHITECTURE.md §11; durable-objects/wallet/sessions.ts):
 * every rotation and revocation decided in one transaction there, an ended session ended for the
 * whole refresh lifetime, and the session check of money, account and admin routes asked of the
 * object, not D1.
 */
const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

/**
 * Every purge there is, as if `ms` had passed: the scheduled maintenance's, and the user's object's
 * alarm with its clock moved on.
 */
async function purgeAfter(userId: string, ms: number) {
  await purgeExpired(env, Date.now() + ms);
  await inWallet(userId, (wallet) => wallet.advanceClock(ms));
  await runDurableObjectAlarm(walletStub(env, userId));
}

const ticket = (token: string) => call("POST", "/api/v1/realtime/tickets", { token });

describe("a refresh racing logout-all, then a purge", () => {
  it("the token that refresh issued never refreshes, however long after the purge", async () => {
    const session = await registerSession();
    // The refresh is held at its D1 step (the insert of the new token before, the read of the
    // user now), and logout-all runs to its end right there.
    let raced = false;
    const { d1 } = countingD1(env.DB, async (query) => {
      if (raced || !/insert into "refresh_tokens"|from "users"/i.test(query)) return;
      raced = true;
      expect((await logoutAll(session.accessToken)).status).toBe(200);
    });
    const refreshed = await call("POST", "/api/v1/auth/refresh", {
      body: { refreshToken: session.refreshToken },
      headers: ip(),
      bindings: { DB: d1 },
    });
    expect(raced).toBe(true);
    expect(refreshed.status, refreshed.text).toBe(200);
    // Not presented before the purge: an attempt would count as reuse and taint the token itself.
    const issued = refreshed.json.data.refreshToken as string;
    for (const elapsed of [2 * HOUR, 2 * DAY, 20 * DAY]) {
      await purgeAfter(session.user.id, elapsed);
      expectError(await refresh(issued), 401, "invalid_token");
      // Nor does the access token that came with it pass the session check.
      const ticket = await call("POST", "/api/v1/realtime/tickets", { token: refreshed.json.data.accessToken });
      expectError(ticket, 401, "session_ended");
    }
  });
});

/** The user's object's session tables, straight from its SQLite. */
const familiesOf = (userId: string) =>
  rowsOf(userId, "SELECT family_id, revoked_at IS NOT NULL AS revoked FROM session_families ORDER BY created_at, family_id");
const tokenCount = async (userId: string) => Number((await rowsOf(userId, "SELECT COUNT(*) AS n FROM session_tokens"))[0]?.n);

const sidOf = (accessToken: string) => JSON.parse(atob(accessToken.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))).sid;

describe("sessions in the user's object", () => {
  it("rotation keeps one family; a used token presented again revokes the whole family, its newest token included", async () => {
    const session = await registerSession();
    const other = await loginSession(session.user.email);
    const first = (await refresh(session.refreshToken)).json.data;
    const second = (await refresh(first.refreshToken)).json.data;
    expect(new Set([sidOf(session.accessToken), sidOf(first.accessToken), sidOf(second.accessToken)]).size).toBe(1);
    expect(await tokenCount(session.user.id)).toBe(4);
    // The first token again: reuse.
    expectError(await refresh(session.refreshToken), 401, "invalid_token");
    expectError(await refresh(second.refreshToken), 401, "invalid_token");
    expect(await familiesOf(session.user.id)).toEqual([
      { family_id: sidOf(session.accessToken), revoked: 1 },
      { family_id: sidOf(other.accessToken), revoked: 0 },
    ]);
    expectError(await ticket(second.accessToken), 401, "session_ended");
    // The account's other session is untouched.
    expect((await refresh(other.refreshToken)).status).toBe(200);
  });

  it("logout revokes that family only; a token of another account is 401 and revokes nothing", async () => {
    const session = await registerSession();
    const other = await loginSession(session.user.email);
    const stranger = await registerSession();
    expectError(await logout({ accessToken: stranger.accessToken, refreshToken: session.refreshToken }), 401, "invalid_token");
    expect((await refresh(session.refreshToken)).status).toBe(200);
    const current = await loginSession(session.user.email);
    expect((await logout(current)).status).toBe(200);
    expectError(await refresh(current.refreshToken), 401, "invalid_token");
    expect((await refresh(other.refreshToken)).status).toBe(200);
    expect((await logout({ accessToken: current.accessToken, refreshToken: "not-a-token" })).status).toBe(401);
  });

  it("logout-all by a session this object never issued ends that session too", async () => {
    const user = await seedUser();
    expect((await logoutAll(user.token)).json.data).toEqual({ loggedOut: true, revokedSessions: 0 });
    expectError(await logoutAll(user.token), 401, "session_ended");
    expectError(await ticket(user.token), 401, "session_ended");
  });

  it("a password change revokes every family and starts one new family in the same transaction", async () => {
    const session = await registerSession();
    await loginSession(session.user.email);
    const res = await changePassword(session.accessToken, PASSWORD, "a much longer passphrase");
    expect(res.status, res.text).toBe(200);
    const families = await familiesOf(session.user.id);
    expect(families.map((family) => family.revoked)).toEqual([1, 1, 0]);
    expect(families[2]?.family_id).toBe(sidOf(res.json.data.accessToken));
  });

  it("an ended session's refresh token never works again, and its rows go only once every token of it has expired", async () => {
    const session = await registerSession();
    const rotated = (await refresh(session.refreshToken)).json.data;
    expect((await logoutAll(rotated.accessToken)).status).toBe(200);
    for (const elapsed of [HOUR, 10 * DAY, 18 * DAY]) {
      await purgeAfter(session.user.id, elapsed);
      expect(await familiesOf(session.user.id)).toEqual([{ family_id: sidOf(session.accessToken), revoked: 1 }]);
      expectError(await refresh(rotated.refreshToken), 401, "invalid_token");
      expectError(await ticket(rotated.accessToken), 401, "session_ended");
    }
    // 31 days and a purge on: every token of the family has expired, so nothing of it is kept.
    await purgeAfter(session.user.id, 3 * DAY);
    expect(await familiesOf(session.user.id)).toEqual([]);
    expect(await tokenCount(session.user.id)).toBe(0);
    expectError(await refresh(rotated.refreshToken), 401, "invalid_token");
  });

  it("refreshes racing logout-all: every token a refresh answered is dead once logout-all has answered", async () => {
    const session = await registerSession();
    const chains = await Promise.all([
      ...Array.from({ length: 4 }, async () => {
        const answers: string[] = [];
        let token = session.refreshToken;
        for (let i = 0; i < 3; i += 1) {
          const res = await refresh(token);
          if (res.status !== 200) break;
          token = res.json.data.refreshToken;
          answers.push(token);
        }
        return answers;
      }),
      logoutAll(session.accessToken).then(() => [] as string[]),
    ]);
    for (const token of chains.flat()) expectError(await refresh(token), 401, "invalid_token");
  });
});

describe("an ended session is refused within 1 s, and the session check makes no D1 query", () => {
  it("tickets and logout-all ask the user's object only", async () => {
    const session = await registerSession();
    const { d1, roundTrips } = countingD1(env.DB);
    const bindings = { DB: d1 };
    expect((await call("POST", "/api/v1/realtime/tickets", { token: session.accessToken, bindings })).status).toBe(201);
    expect((await call("POST", "/api/v1/auth/logout-all", { token: session.accessToken, bindings })).status).toBe(200);
    const ended = Date.now();
    expectError(await call("POST", "/api/v1/realtime/tickets", { token: session.accessToken, bindings }), 401, "session_ended");
    expectError(await call("POST", "/api/v1/auth/logout-all", { token: session.accessToken, bindings }), 401, "session_ended");
    expect(Date.now() - ended).toBeLessThan(1_000);
    expect(roundTrips).toEqual([]);
  });

  it("admin routes: 401 session_ended after the admin's logout, with no D1 query (role, status and session are one call on the owner)", async () => {
    const admin = await registerSession();
    await setOwnerRole(admin.user.id, "admin");
    const live = await loginSession(admin.user.email);
    expect((await logout(admin)).status).toBe(200);
    const ended = Date.now();
    const { d1, roundTrips } = countingD1(env.DB);
    expectError(
      await call("GET", "/api/v1/admin/audit", { token: admin.accessToken, bindings: { DB: d1 } }),
      401,
      "session_ended",
    );
    expect(Date.now() - ended).toBeLessThan(1_000);
    expect(roundTrips).toEqual([]);
    expect((await call("GET", "/api/v1/admin/audit", { token: live.accessToken })).status).toBe(200);
  });

  it("a transfer is refused by the sender's object itself, after a stored key outcome answers first", async () => {
    const session = await registerSession();
    const recipient = await seedWalletUser();
    const key = `kept-${crypto.randomUUID()}`;
    const first = await transfer(session.accessToken, { recipientId: recipient.id, amount: 2 }, { key });
    expect(first.status, first.text).toBe(201);
    const ended = Date.now();
    expect((await logoutAll(session.accessToken)).status).toBe(200);
    expect((await transfer(session.accessToken, { recipientId: recipient.id, amount: 2 }, { key })).text).toBe(first.text);
    expectError(await transfer(session.accessToken, { recipientId: recipient.id, amount: 2 }), 401, "session_ended");
    expect(Date.now() - ended).toBeLessThan(1_000);
    // The wallet's command carries the session: the refusal comes from the object, D1 or not.
    const refused = await walletStub(env, session.user.id).transfer({
      senderId: session.user.id,
      recipientId: recipient.id,
      amount: 2,
      note: null,
      idempotencyKey: null,
      fingerprint: null,
      refusal: null,
      sessionId: sidOf(session.accessToken),
      chatId: null,
      signupCredits: 100,
      dailyLimit: 1_000_000,
      ratePerMinute: 1_000,
      voidAfterMs: 3_600_000,
    });
    expect(refused).toMatchObject({ ok: false, code: "session_ended" });
    expect(await balanceOf(session.user.id)).toBe(98);
  });
});

describe("a password change whose session replacement fails once", () => {
  for (const committed of [false, true]) {
    it(`${committed ? "after committing" : "before committing"}: tried again, every old session ends and only the answered one lives`, async () => {
      const session = await registerSession();
      const other = await loginSession(session.user.email);
      await inWallet(session.user.id, (wallet) => wallet.failSessionReplacements(1, committed));
      const res = await changePassword(session.accessToken, PASSWORD, "a much longer passphrase");
      expect(res.status, res.text).toBe(200);
      for (const old of [session, other]) expectError(await refresh(old.refreshToken), 401, "invalid_token");
      const families = await familiesOf(session.user.id);
      expect(families.filter((family) => family.revoked === 0).map((family) => family.family_id)).toEqual([
        sidOf(res.json.data.accessToken),
      ]);
      expect((await refresh(res.json.data.refreshToken)).status).toBe(200);
    });
  }
});

describe("the sessions' queries", () => {
  it("are primary-key or index lookups, never a scan of the user's sessions (logout-all reads the live ones by design)", async () => {
    const session = await registerSession();
    await loginSession(session.user.email);
    const plans = await inWallet(session.user.id, (_wallet, state) =>
      Object.entries(SESSIONS_SQL).map(([name, query]) => {
        const parameters = Array.from(query.matchAll(/\?/g), () => 0);
        const plan = state.storage.sql.exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...parameters).toArray();
        return { name, plan: plan.map((row) => row.detail).join("; ") };
      }),
    );
    for (const { name, plan } of plans) {
      if (name === "liveFamilies") continue;
      expect(plan, name).not.toMatch(/SCAN session_(families|tokens)/);
    }
    expect(plans.find((p) => p.name === "purgeTokens")?.plan).toMatch(/session_tokens_expires/);
    expect(plans.find((p) => p.name === "purgeFamilies")?.plan).toMatch(/session_families_expires/);
  });
});
