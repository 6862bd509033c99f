import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { getConfig } from "../src/lib/config";
import { newId } from "../src/lib/ids";
import { REALTIME_CLOSE_CODES } from "../src/schemas/realtime";
import { fanOut, issueTicket } from "../src/services/realtime";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, openSocket, type TestSocket, ticketFor, upgrade } from "./support/realtime";
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
import { seedUser } from "./support/users";

/**
 * Sockets end with their session (API.md "Realtime"): over real WebSockets in workerd, each
 * close is held against the 2 s the contract allows, counted from the request that caused it.
 */
const DEADLINE_MS = 2_000;
const { sessionEnded, accountSuspended, tooManyConnections } = REALTIME_CLOSE_CODES;

const { opened, connect } = closeSocketsAfterEach();

/** Two sessions of one account (register, then a second sign-in), one socket each. */
async function twoSessions() {
  const first = await registerSession();
  const second = await loginSession(first.user.email);
  return { first, second, firstSocket: await connect(first.accessToken), secondSocket: await connect(second.accessToken) };
}

async function expectClosedWith(socket: TestSocket, close: { code: number; reason: string }, since: number) {
  const event = await socket.closedBy(DEADLINE_MS);
  expect({ code: event.code, reason: event.reason }).toEqual(close);
  expect(event.at - since).toBeLessThanOrEqual(DEADLINE_MS);
}

/** Still open: each of `sockets` (all of `userId`'s) receives a frame pushed now. */
async function expectOpen(sockets: TestSocket | TestSocket[], userId: string) {
  const event = { type: "chat.read" as const, data: { chatId: newId(), userId, lastReadSeq: 1 } };
  await fanOut(env, [userId], event);
  for (const socket of [sockets].flat()) {
    expect(socket.isClosed()).toBe(false);
    expect(await socket.next()).toMatchObject(event);
  }
}

const connections = (userId: string) => env.REALTIME.get(env.REALTIME.idFromName(userId)).connections();

const ticketRefused = async (session: SessionPair) =>
  expectError(await call("POST", "/api/v1/realtime/tickets", { token: session.accessToken }), 401, "session_ended");

describe("a socket ends with its session", () => {
  it("logout closes that session's socket with 4001 session_ended, not the same user's other session's", async () => {
    const { first, second, firstSocket, secondSocket } = await twoSessions();
    const since = Date.now();
    expect((await logout(first)).status).toBe(200);
    await expectClosedWith(firstSocket, sessionEnded, since);
    await expectOpen(secondSocket, first.user.id);
    // The access token still reads over HTTP until it expires, but opens nothing any more.
    expect((await call("GET", "/api/v1/users/me", { token: first.accessToken })).status).toBe(200);
    await ticketRefused(first);
    await connect(second.accessToken);
    expect(await connections(first.user.id)).toBe(2);
  });

  it("a ticket issued before the logout and used after it does not open", async () => {
    const session = await registerSession();
    const ticket = await ticketFor(session.accessToken);
    expect((await logout(session)).status).toBe(200);
    const res = await upgrade(ticket);
    expect(res.status).toBe(401);
    expect(res.webSocket).toBeFalsy();
  });

  it("a ticket racing the end of its session is refused by the object itself", async () => {
    // The session check at the ticket route (the user's object) has passed; the session ended meanwhile.
    const session = await registerSession();
    const caller = { id: session.user.id, sessionId: JSON.parse(atob(session.accessToken.split(".")[1]!)).sid };
    expect((await logout(session)).status).toBe(200);
    await expect(issueTicket(env, getConfig(env), caller)).rejects.toMatchObject({ code: "session_ended" });
  });

  it("logout-all closes every socket of the caller (4001), and no session gets a ticket after it", async () => {
    const { first, second, firstSocket, secondSocket } = await twoSessions();
    const third = await connect(second.accessToken);
    const other = await registerSession();
    const otherSocket = await connect(other.accessToken);
    const since = Date.now();
    const res = await logoutAll(second.accessToken);
    expect(res.status).toBe(200);
    expect(res.json.data).toEqual({ loggedOut: true, revokedSessions: 2 });
    for (const socket of [firstSocket, secondSocket, third]) await expectClosedWith(socket, sessionEnded, since);
    await ticketRefused(first);
    await ticketRefused(second);
    expect(await connections(first.user.id)).toBe(0);
    // Someone else's socket is untouched.
    await expectOpen(otherSocket, other.user.id);
  });

  it("a password change closes every socket of the caller (4001); the new pair opens a socket that stays", async () => {
    const { first, second, firstSocket, secondSocket } = await twoSessions();
    const since = Date.now();
    const res = await changePassword(second.accessToken, PASSWORD, "a much longer passphrase");
    expect(res.status, res.text).toBe(200);
    for (const socket of [firstSocket, secondSocket]) await expectClosedWith(socket, sessionEnded, since);
    await ticketRefused(first);
    await ticketRefused(second);
    const fresh = await connect(res.json.data.accessToken);
    await expectOpen(fresh, first.user.id);
  });

  it("a refused password change closes nothing", async () => {
    const { first, firstSocket, secondSocket } = await twoSessions();
    expectError(
      await changePassword(first.accessToken, "not the password", "a much longer passphrase"),
      401,
      "invalid_credentials",
    );
    expectError(await changePassword(first.accessToken, PASSWORD, "short"), 400, "validation_failed");
    await expectOpen([firstSocket, secondSocket], first.user.id);
  });

  it("reusing a refresh token closes the sockets of its family, those opened after the refresh included", async () => {
    const { first, second, firstSocket, secondSocket } = await twoSessions();
    const rotated = (await refresh(first.refreshToken)).json.data as SessionPair;
    const rotatedSocket = await connect(rotated.accessToken);
    const since = Date.now();
    expectError(await refresh(first.refreshToken), 401, "invalid_token");
    await expectClosedWith(firstSocket, sessionEnded, since);
    await expectClosedWith(rotatedSocket, sessionEnded, since);
    await expectOpen(secondSocket, second.user.id);
    await ticketRefused(rotated);
  });
});

describe("suspension closes every socket", () => {
  it("an admin's suspension closes all of the user's sockets with 4003 account_suspended; the user may reconnect to read", async () => {
    const admin = await seedUser({ role: "admin" });
    const { first, firstSocket, secondSocket } = await twoSessions();
    const bystander = await registerSession();
    const bystanderSocket = await connect(bystander.accessToken);
    const since = Date.now();
    const res = await call("POST", `/api/v1/admin/users/${first.user.id}/suspension`, {
      token: admin.token,
      body: { reason: "abuse" },
    });
    expect(res.status, res.text).toBe(200);
    for (const socket of [firstSocket, secondSocket]) await expectClosedWith(socket, accountSuspended, since);
    await expectOpen(bystanderSocket, bystander.user.id);
    // Suspension stops sending, not reading (API.md): a new socket opens and receives.
    await expectOpen(await connect(first.accessToken), first.user.id);
  });

  it("lifting a suspension closes nothing", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser({ status: "suspended" });
    const socket = await connect(user.token);
    expect((await call("DELETE", `/api/v1/admin/users/${user.id}/suspension`, { token: admin.token })).status).toBe(200);
    await expectOpen(socket, user.id);
  });
});

describe("connection cap", () => {
  it("the 11th socket of a user closes the first with 4008 too_many_connections, and only it", async () => {
    const user = await seedUser();
    const sockets: TestSocket[] = [];
    for (let i = 0; i < 10; i += 1) sockets.push(await connect(user.token));
    expect(await connections(user.id)).toBe(10);
    const since = Date.now();
    const eleventh = await connect(user.token);
    await expectClosedWith(sockets[0]!, tooManyConnections, since);
    expect(await connections(user.id)).toBe(10);
    for (const socket of [...sockets.slice(1), eleventh]) expect(socket.isClosed()).toBe(false);
    // The next one closes the oldest left: the second.
    const twelfth = await connect(user.token);
    await expectClosedWith(sockets[1]!, tooManyConnections, Date.now() - 100);
    await expectOpen(twelfth, user.id);
  });

  it("REALTIME_MAX_CONNECTIONS sets the cap", async () => {
    const user = await seedUser();
    const vars = { REALTIME_MAX_CONNECTIONS: "2" };
    const a = await openSocket(await ticketFor(user.token), vars);
    const b = await openSocket(await ticketFor(user.token), vars);
    opened.push(a, b);
    const since = Date.now();
    const c = await openSocket(await ticketFor(user.token), vars);
    opened.push(c);
    await expectClosedWith(a, tooManyConnections, since);
    expect(b.isClosed()).toBe(false);
    expect(await connections(user.id)).toBe(2);
  });

  it("sockets of other users do not count", async () => {
    const user = await seedUser();
    const others = await Promise.all(Array.from({ length: 3 }, () => seedUser()));
    const mine = await connect(user.token);
    for (const other of others) for (let i = 0; i < 4; i += 1) await connect(other.token);
    await expectOpen(mine, user.id);
  });
});
