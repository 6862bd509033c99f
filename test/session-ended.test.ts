import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { openWallet } from "../src/services/wallets";
import { call, expectError } from "./support/http";
import {
  changePassword,
  loginSession,
  logout,
  logoutAll,
  PASSWORD,
  refresh,
  registerSession,
  type SessionPair,
} from "./support/sessions";
import { seedUser, setOwnerRole } from "./support/users";
import { balanceOf, transfer } from "./support/wallets";

/**
 * Ended sessions (API.md "Ended sessions"): after a logout, logout-all, password change or
 * refresh-token reuse, the ended session's access token is refused at once with 401
 * `session_ended` where credits move, on the account routes and on admin routes; elsewhere it
 * still reads until it expires.
 */
async function funded() {
  const session = await registerSession();
  const recipient = await seedUser();
  await openWallet(env, recipient.id);
  return { session, recipient };
}

const me = (token: string) => call("GET", "/api/v1/users/me", { token });

/** Every refusing route, asked with `token`: each must answer 401 session_ended. */
async function expectRefusedEverywhere(token: string, recipientId: string) {
  expectError(await transfer(token, { recipientId, amount: 5 }), 401, "session_ended");
  expectError(await transfer(token, { recipientId, amount: 5 }, { key: `ended-${crypto.randomUUID()}` }), 401, "session_ended");
  expectError(await call("POST", "/api/v1/realtime/tickets", { token }), 401, "session_ended");
  expectError(await logoutAll(token), 401, "session_ended");
  expectError(await changePassword(token, PASSWORD, "another long passphrase"), 401, "session_ended");
}

describe("an ended session's access token", () => {
  it("after logout-all: a transfer is 401 session_ended and moves nothing, while GET /users/me still answers 200", async () => {
    const { session, recipient } = await funded();
    expect((await transfer(session.accessToken, { recipientId: recipient.id, amount: 1 })).status).toBe(201);
    expect((await logoutAll(session.accessToken)).status).toBe(200);
    const before = [await balanceOf(session.user.id), await balanceOf(recipient.id)];
    const refused = expectError(
      await transfer(session.accessToken, { recipientId: recipient.id, amount: 5 }),
      401,
      "session_ended",
    );
    expect(refused.errors[0]).toBe("Authentication required");
    expect([await balanceOf(session.user.id), await balanceOf(recipient.id)]).toEqual(before);
    expect((await me(session.accessToken)).status).toBe(200);
    expect((await call("GET", "/api/v1/wallets/me", { token: session.accessToken })).status).toBe(200);
    // A refused keyed request stores nothing: signed in again, the same key runs.
    const key = `refused-${crypto.randomUUID()}`;
    expectError(await transfer(session.accessToken, { recipientId: recipient.id, amount: 5 }, { key }), 401, "session_ended");
    const again = await loginSession(session.user.email);
    const retried = await transfer(again.accessToken, { recipientId: recipient.id, amount: 5 }, { key });
    expect(retried.status, retried.text).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("is refused on transfers, tickets, logout-all and password change after each way a session ends", async () => {
    const { recipient } = await funded();
    const ends: Record<string, (s: SessionPair) => Promise<unknown>> = {
      logout: (s) => logout(s),
      "logout-all": (s) => logoutAll(s.accessToken),
      "password change by another session": async (s) => {
        const other = await loginSession(s.user.email);
        expect((await changePassword(other.accessToken, PASSWORD, "a brand new passphrase")).status).toBe(200);
      },
      "refresh-token reuse": async (s) => {
        expect((await refresh(s.refreshToken)).status).toBe(200);
        expect((await refresh(s.refreshToken)).status).toBe(401);
      },
    };
    for (const [how, end] of Object.entries(ends)) {
      const session = await registerSession();
      await end(session);
      try {
        await expectRefusedEverywhere(session.accessToken, recipient.id);
      } catch (error) {
        throw new Error(`after ${how}: ${(error as Error).message}`);
      }
      expect((await me(session.accessToken)).status, how).toBe(200);
    }
  });

  it("still gets the stored outcome of a key it used before the session ended (a replay answers first)", async () => {
    const { session, recipient } = await funded();
    const key = `before-end-${crypto.randomUUID()}`;
    const first = await transfer(session.accessToken, { recipientId: recipient.id, amount: 3 }, { key });
    expect(first.status).toBe(201);
    expect((await logoutAll(session.accessToken)).status).toBe(200);
    const replay = await transfer(session.accessToken, { recipientId: recipient.id, amount: 3 }, { key });
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.text).toBe(first.text);
  });

  it("an admin's grant is 401 session_ended after its logout, and a live session of the same admin still grants", async () => {
    const admin = await registerSession();
    await setOwnerRole(admin.user.id, "admin");
    const live = await loginSession(admin.user.email);
    const user = await seedUser();
    const grant = (token: string) =>
      call("POST", `/api/v1/admin/wallets/${user.id}/grants`, { token, body: { amount: 10, reason: "x" } });
    expect((await logout(admin)).status).toBe(200);
    expectError(await grant(admin.accessToken), 401, "session_ended");
    expect((await grant(live.accessToken)).status).toBe(201);
  });

  it("a live session is unaffected by the end of another session of the same account", async () => {
    const { session, recipient } = await funded();
    const other = await loginSession(session.user.email);
    expect((await logout(other)).status).toBe(200);
    expect((await transfer(session.accessToken, { recipientId: recipient.id, amount: 2 })).status).toBe(201);
    expect((await call("POST", "/api/v1/realtime/tickets", { token: session.accessToken })).status).toBe(201);
  });
});
