import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it, vi } from "vitest";
import { createDb } from "../src/db/client";
import { writePresence } from "../src/db/presence";
import { realtimePresence } from "../src/db/schema";
import {
  MAX_CONNECTIONS_HEADER,
  type RealtimeDO,
  TICKET_HASH_HEADER,
  USER_ID_HEADER,
} from "../src/durable-objects/realtime/realtime-do";
import { REALTIME_CLOSE_CODES } from "../src/schemas/realtime";
import { withTriggers } from "./support/d1-triggers";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, openSocket, ticketFor, upgrade } from "./support/realtime";
import { seedUser } from "./support/users";
import { NO_RATE_LIMIT, seedWalletUser, transfer } from "./support/wallets";

/**
 * Presence (docs/realtime.md, "Presence"): no request path reads it any more; transfers and
 * chats call each party's realtime object, which knows its own sockets (so a connect tells no
 * chat anything). D1 keeps the row each user's RealtimeDO writes. Counted in RealtimeDO calls
 * (`deliverCalls`); a transfer's requests run with `vars`, so `call` waits for their background
 * pushes, while a chat's pushes run behind its own answer (waited for).
 */

const { opened, connect } = closeSocketsAfterEach();
const db = createDb(env.DB);
const stubOf = (userId: string) => env.REALTIME.get(env.REALTIME.idFromName(userId));

function deliverCalls(userId: string): Promise<number> {
  return runInDurableObject(stubOf(userId), (instance: RealtimeDO) => instance.deliverCalls);
}

/** How many `deliver` calls each of `userIds` got while `action` ran. */
async function callsDuring(userIds: string[], action: () => Promise<unknown>): Promise<number[]> {
  const before = await Promise.all(userIds.map(deliverCalls));
  await action();
  const after = await Promise.all(userIds.map(deliverCalls));
  return after.map((count, i) => count - before[i]!);
}

async function presence(userId: string) {
  return db.select().from(realtimePresence).where(eq(realtimePresence.userId, userId)).get();
}

/** Waits (up to 2 s) until the object's D1 write for a close has landed. */
async function eventuallyConnected(userId: string, connected: boolean) {
  await vi.waitFor(async () => expect((await presence(userId))?.connected).toBe(connected), { timeout: 2_000, interval: 20 });
}

const sendV1 = (token: string, recipientId: string, content: string) =>
  call("POST", "/api/v1/messages", { token, body: { recipientId, content }, vars: NO_RATE_LIMIT });
const sendV2 = (token: string, chatId: string, content: string) =>
  call("POST", "/api/v2/messages", { token, body: { chatId, content }, vars: NO_RATE_LIMIT });

describe("pushes reach every party's realtime object, with no presence read", () => {
  it("a transfer calls both parties' realtime objects, connected or not, and the connected one gets its frames", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();

    const unseen = await callsDuring([alice.id, bob.id], async () => {
      expect((await transfer(alice.token, { recipientId: bob.id, amount: 10 })).status).toBe(201);
    });
    expect(unseen).toEqual([1, 1]);

    const bobSocket = await connect(bob.token);
    let sent: any;
    const seen = await callsDuring([alice.id, bob.id], async () => {
      const res = await transfer(alice.token, { recipientId: bob.id, amount: 20 });
      expect(res.status).toBe(201);
      sent = res.json.data;
    });
    expect(seen).toEqual([1, 1]);
    const frames = [await bobSocket.next(), await bobSocket.next(), await bobSocket.next()];
    expect(frames.map((frame) => frame.type)).toEqual(["wallet.updated", "message.created", "transfer.received"]);
    expect(frames[0].data).toMatchObject({ userId: bob.id, balance: 130 });
    expect(frames[2].data).toEqual(sent);
  });

  it("a message send (v1 and v2) calls every member's realtime object; a member who connected since gets it", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const first = await sendV1(alice.token, bob.id, "hello");
    expect(first.status).toBe(201);
    const chatId = first.json.data.chatId;
    // Nobody is connected: the chat still calls both (each object knows it has no socket).
    const before = await Promise.all([alice.id, bob.id].map(deliverCalls));
    expect((await sendV2(bob.token, chatId, "hi")).status).toBe(201);
    await vi.waitFor(
      async () => expect((await Promise.all([alice.id, bob.id].map(deliverCalls))).map((n, i) => n - before[i]!)).toEqual([1, 1]),
      { timeout: 2_000, interval: 20 },
    );

    const aliceSocket = await connect(alice.token);
    const res = await sendV2(bob.token, chatId, "are you there?");
    expect(res.status).toBe(201);
    expect((await sendV1(bob.token, alice.id, "v1 too")).status).toBe(201);
    expect(await aliceSocket.next()).toMatchObject({ type: "message.created", data: res.json.data });
    expect(await aliceSocket.next()).toMatchObject({ type: "message.created", data: { content: "v1 too" } });
  });

  it("a group message calls every member's object; the connected member gets it", async () => {
    const owner = await seedUser();
    const ann = await seedUser();
    const ben = await seedUser();
    const chat = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "Trip", memberIds: [ann.id, ben.id] },
    });
    expect(chat.status).toBe(201);
    const annSocket = await connect(ann.token);
    const members = [owner.id, ann.id, ben.id];
    const before = await Promise.all(members.map(deliverCalls));
    expect((await sendV2(owner.token, chat.json.data.id, "who is here?")).status).toBe(201);
    expect((await annSocket.next()).data.content).toBe("who is here?");
    await vi.waitFor(
      async () => expect((await Promise.all(members.map(deliverCalls))).map((n, i) => n - before[i]!)).toEqual([1, 1, 1]),
      { timeout: 2_000, interval: 20 },
    );
  });
});

describe("presence follows the sockets", () => {
  it("is connected as soon as the upgrade answered, stays so while one of two sockets remains, ends with the last, and a reconnect is seen again", async () => {
    const user = await seedUser();
    expect(await presence(user.id)).toBeUndefined();

    const phone = await connect(user.token);
    // No waiting: the object wrote it before answering 101.
    expect((await presence(user.id))?.connected).toBe(true);
    const laptop = await connect(user.token);

    phone.close();
    await vi.waitFor(async () => expect(await stubOf(user.id).connections()).toBe(1), { timeout: 2_000, interval: 20 });
    // Give a wrong "disconnected" write time to land, then check it did not.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await presence(user.id))?.connected).toBe(true);

    laptop.close();
    await eventuallyConnected(user.id, false);
    const closedAt = (await presence(user.id))!.changedAt;

    const again = await connect(user.token);
    const row = await presence(user.id);
    expect(row?.connected).toBe(true);
    expect(row!.changedAt).toBeGreaterThan(closedAt);
    const friend = await seedUser();
    expect((await sendV1(friend.token, user.id, "back?")).status).toBe(201);
    expect((await again.next()).data.content).toBe("back?");
  });

  it("sockets the server closes (logout-all 4001, suspension 4003) leave the user disconnected by the time the request answers", async () => {
    const admin = await seedUser({ role: "admin" });
    const loggingOut = await seedUser();
    const suspended = await seedUser();
    const a = await connect(loggingOut.token);
    const b = await connect(suspended.token);

    expect((await call("POST", "/api/v1/auth/logout-all", { token: loggingOut.token })).status).toBe(200);
    expect((await presence(loggingOut.id))?.connected).toBe(false);
    expect((await a.closedBy()).code).toBe(REALTIME_CLOSE_CODES.sessionEnded.code);

    const res = await call("POST", `/api/v1/admin/users/${suspended.id}/suspension`, {
      token: admin.token,
      body: { reason: "test" },
    });
    expect(res.status).toBe(200);
    expect((await presence(suspended.id))?.connected).toBe(false);
    expect((await b.closedBy()).code).toBe(REALTIME_CLOSE_CODES.accountSuspended.code);
  });

  it("a presence write that fails on connect fails the upgrade whole (500, no socket) and the ticket stays usable", async () => {
    const user = await seedUser();
    const ticket = await ticketFor(user.token);
    const trigger = `fail_presence_${user.id}`;
    const raise = `WHEN NEW.user_id = '${user.id}' BEGIN SELECT RAISE(ABORT, 'injected: presence down'); END`;
    const failed = await withTriggers(
      {
        [`${trigger}_insert`]: `BEFORE INSERT ON realtime_presence ${raise}`,
        [`${trigger}_update`]: `BEFORE UPDATE ON realtime_presence ${raise}`,
      },
      () => upgrade(ticket),
    );
    expect(failed.webSocket).toBeNull();
    const body = await failed.json<any>();
    expectError(
      { status: failed.status, headers: failed.headers, json: body, text: JSON.stringify(body) },
      500,
      "internal_error",
    );
    expect(await stubOf(user.id).connections()).toBe(0);
    expect(await presence(user.id)).toBeUndefined();

    const socket = await openSocket(ticket);
    opened.push(socket);
    expect((await presence(user.id))?.connected).toBe(true);
  });

  it("an upgrade that does not say whose it is fails before spending the ticket", async () => {
    const user = await seedUser();
    const ticket = await ticketFor(user.token);
    const hash = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(ticket.slice(ticket.indexOf(".") + 1)))),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    await expect(
      stubOf(user.id).fetch("https://realtime.internal/connect", {
        headers: { Upgrade: "websocket", [TICKET_HASH_HEADER]: hash, [MAX_CONNECTIONS_HEADER]: "10" },
      }),
    ).rejects.toThrow(USER_ID_HEADER);
    opened.push(await openSocket(ticket));
    expect((await presence(user.id))?.connected).toBe(true);
  });

  it("a disconnect that never reached D1 is corrected by the next push that finds no socket", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const bobSocket = await connect(bob.token);
    const trigger = `fail_disconnect_${bob.id}`;
    await withTriggers(
      {
        [trigger]: `BEFORE UPDATE ON realtime_presence WHEN NEW.user_id = '${bob.id}' BEGIN SELECT RAISE(ABORT, 'injected: presence down'); END`,
      },
      async () => {
        bobSocket.close();
        await vi.waitFor(async () => expect(await stubOf(bob.id).connections()).toBe(0), { timeout: 2_000, interval: 20 });
        await new Promise((resolve) => setTimeout(resolve, 100));
      },
    );
    // A false positive: the next push finds nobody and corrects the row.
    expect((await presence(bob.id))?.connected).toBe(true);
    const stale = await callsDuring([bob.id], () => transfer(alice.token, { recipientId: bob.id, amount: 5 }));
    expect(stale).toEqual([1]);
    await eventuallyConnected(bob.id, false);
  });
});

describe("the race guard", () => {
  it("a write older than the row's cannot overwrite it; an equal stamp lets only 'connected' through", async () => {
    const userId = (await seedUser()).id;
    expect(await writePresence(db, userId, true, 2_000)).toBe(true);
    // A disconnect decided earlier, landing late.
    expect(await writePresence(db, userId, false, 1_000)).toBe(false);
    expect(await presence(userId)).toEqual({ userId, connected: true, changedAt: 2_000 });
    // A tie does not turn it off...
    expect(await writePresence(db, userId, false, 2_000)).toBe(false);
    expect((await presence(userId))?.connected).toBe(true);
    // ...a newer write does,
    expect(await writePresence(db, userId, false, 3_000)).toBe(true);
    expect(await presence(userId)).toEqual({ userId, connected: false, changedAt: 3_000 });
    // and a tie turns it back on.
    expect(await writePresence(db, userId, true, 3_000)).toBe(true);
    expect(await writePresence(db, userId, true, 2_500)).toBe(false);
    expect(await presence(userId)).toEqual({ userId, connected: true, changedAt: 3_000 });
  });

  it("the object's stamps keep increasing across disconnects and reconnects, whatever the wall clock says", async () => {
    const user = await seedUser();
    const stamps: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const socket = await connect(user.token);
      stamps.push((await presence(user.id))!.changedAt);
      socket.close();
      await eventuallyConnected(user.id, false);
      stamps.push((await presence(user.id))!.changedAt);
    }
    for (let i = 1; i < stamps.length; i += 1) expect(stamps[i]).toBeGreaterThan(stamps[i - 1]!);
    // A row stamped in the future (a clock that jumped back) still gets the object's next state.
    const future = Date.now() + 60_000;
    await runInDurableObject(stubOf(user.id), (_instance, state) =>
      state.storage.sql.exec("UPDATE presence SET changed_at = ?", future),
    );
    await writePresence(db, user.id, false, future);
    await connect(user.token);
    expect(await presence(user.id)).toMatchObject({ connected: true, changedAt: future + 1 });
  });
});
