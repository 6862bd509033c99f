import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { getConfig } from "../src/lib/config";
import { newId } from "../src/lib/ids";
import type { RealtimeEvent } from "../src/schemas/realtime";
import { fanOut, issueTicket, publish, TICKET_TTL_SECONDS } from "../src/services/realtime";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, openSocket, type TestSocket, ticketFor, upgrade } from "./support/realtime";
import { seedUser } from "./support/users";

const { opened, connect } = closeSocketsAfterEach();

async function refusal(res: Response) {
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: JSON.parse(text) };
}

const readEvent = (userId: string, lastReadSeq = 1): RealtimeEvent => ({
  type: "chat.read",
  data: { chatId: newId(), userId, lastReadSeq },
});

const stubOf = (userId: string) => env.REALTIME.get(env.REALTIME.idFromName(userId));

describe("realtime tickets", () => {
  it("POST /api/v1/realtime/tickets needs a bearer token", async () => {
    expectError(await call("POST", "/api/v1/realtime/tickets"), 401, "authentication_required");
    expectError(await call("POST", "/api/v1/realtime/tickets", { token: "nope" }), 401, "invalid_token");
  });

  it("issues a 60 s ticket with the ws:// URL that opens it", async () => {
    const user = await seedUser();
    const res = await call("POST", "/api/v1/realtime/tickets", { token: user.token });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ isSuccess: true, statusCode: 201, errors: null });
    const { ticket, expiresIn, url } = res.json.data;
    expect(expiresIn).toBe(TICKET_TTL_SECONDS);
    expect(TICKET_TTL_SECONDS).toBe(60);
    expect(ticket).toMatch(/^[0-9a-f]{24}\.\d{13}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(url).toBe(`ws://localhost/api/v1/realtime?ticket=${encodeURIComponent(ticket)}`);
    opened.push(await openSocket(ticket));
  });

  it("without Upgrade: websocket answers 426 and leaves the ticket usable", async () => {
    const user = await seedUser();
    const ticket = await ticketFor(user.token);
    const plain = await refusal(await upgrade(ticket, {}));
    expectError(plain, 426, "upgrade_required");
    expect(plain.headers.get("Upgrade")).toBe("websocket");
    expectError(await call("GET", "/api/v1/realtime"), 426, "upgrade_required");
    opened.push(await openSocket(ticket));
  });

  it("a missing ticket is 401 authentication_required; a malformed or unknown one is 401 invalid_token", async () => {
    expectError(await refusal(await upgrade(null)), 401, "authentication_required");
    expectError(await refusal(await upgrade("")), 401, "authentication_required");
    for (const bad of ["garbage", `${newId()}`, `${newId()}.short`, `NOTANID.${"a".repeat(43)}`]) {
      expectError(await refusal(await upgrade(bad)), 401, "invalid_token");
    }
    // Well-formed, but never issued (right user, wrong mac).
    const user = await seedUser();
    const real = await ticketFor(user.token);
    const [owner, expiresAt, nonce, mac] = real.split(".");
    expectError(await refusal(await upgrade(`${owner}.${expiresAt}.${nonce}.${"A".repeat(43)}`)), 401, "invalid_token");
    // A real ticket's nonce and mac presented for another user (or with another expiry) do not verify.
    const other = await seedUser();
    expectError(await refusal(await upgrade(`${other.id}.${expiresAt}.${nonce}.${mac}`)), 401, "invalid_token");
    expectError(await refusal(await upgrade(`${owner}.${Number(expiresAt) + 60_000}.${nonce}.${mac}`)), 401, "invalid_token");
    opened.push(await openSocket(real));
  });

  it("a forged ticket is refused by the Worker: the target's object is never reached and creates no storage", async () => {
    const victim = await seedUser();
    const someone = await seedUser();
    const [, expiresAt, nonce, mac] = (await ticketFor(someone.token)).split(".");
    const forged = [
      // The shape tickets had when they were `<userId>.<random secret>`.
      `${victim.id}.${"A".repeat(43)}`,
      // Today's shape with a made-up mac.
      `${victim.id}.${Date.now() + 60_000}.${"B".repeat(22)}.${"C".repeat(43)}`,
      // Someone's genuine ticket pointed at the victim.
      `${victim.id}.${expiresAt}.${nonce}.${mac}`,
    ];
    for (const ticket of forged) {
      const res = await upgrade(ticket);
      expect(res.webSocket).toBeFalsy();
      expectError(await refusal(res), 401, "invalid_token");
    }
    // Opening the object here is the first time it runs: it has no table, so no refused upgrade reached it.
    const tables = await runInDurableObject(stubOf(victim.id), (_instance, state) =>
      state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray(),
    );
    expect(tables.map((t) => t.name).filter((name) => !name.startsWith("_cf_"))).toEqual([]);
  });

  it("a ticket given twice in the query is 400 validation_failed", async () => {
    const res = await exports.default.fetch(
      new Request("http://localhost/api/v1/realtime?ticket=a&ticket=b", { headers: { Upgrade: "websocket" } }),
    );
    expectError(await refusal(res), 400, "validation_failed");
  });

  it("the upgrade (a response passed through from the user's object) carries the headers of every response", async () => {
    const user = await seedUser();
    const res = await exports.default.fetch(
      new Request(`http://localhost/api/v1/realtime?ticket=${await ticketFor(user.token)}`, {
        headers: { Upgrade: "websocket", "X-Request-Id": "upgrade-req-1", Origin: "https://app.example.com" },
      }),
    );
    expect(res.status).toBe(101);
    expect(res.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    res.webSocket?.accept();
    res.webSocket?.close(1000);
  });

  it("a ticket works once", async () => {
    const user = await seedUser();
    const ticket = await ticketFor(user.token);
    opened.push(await openSocket(ticket));
    const again = expectError(await refusal(await upgrade(ticket)), 401, "invalid_token");
    expect(again.errors.join(" ")).toMatch(/already used/);
  });

  it("two upgrades racing with one ticket: exactly one opens", async () => {
    const user = await seedUser();
    const ticket = await ticketFor(user.token);
    const results = await Promise.all(Array.from({ length: 5 }, () => upgrade(ticket)));
    const statuses = results.map((res) => res.status).sort();
    expect(statuses).toEqual([101, 401, 401, 401, 401]);
    for (const res of results) {
      if (res.webSocket) {
        res.webSocket.accept();
        res.webSocket.close(1000);
      } else expectError(await refusal(res), 401, "invalid_token");
    }
  });

  it("a ticket expires after 60 s", async () => {
    const user = await seedUser();
    const stale = await issueTicket(env, getConfig(env), user, Date.now() - (TICKET_TTL_SECONDS * 1000 + 1));
    const expired = expectError(await refusal(await upgrade(stale.ticket)), 401, "invalid_token");
    expect(expired.errors.join(" ")).toMatch(/expired/);
    const fresh = await issueTicket(env, getConfig(env), user, Date.now() - (TICKET_TTL_SECONDS * 1000 - 5_000));
    opened.push(await openSocket(fresh.ticket));
  });

  it("only the newest tickets of a user are kept (storage stays bounded)", async () => {
    const user = await seedUser();
    const first = await issueTicket(env, getConfig(env), user);
    for (let i = 0; i < 50; i += 1) await issueTicket(env, getConfig(env), user);
    expectError(await refusal(await upgrade(first.ticket)), 401, "invalid_token");
    const last = await issueTicket(env, getConfig(env), user);
    opened.push(await openSocket(last.ticket));
  });
});

describe("realtime connections", () => {
  it("answers ping with pong, also when spelled with spaces", async () => {
    const user = await seedUser();
    const socket = await connect(user.token);
    socket.send('{"type":"ping"}');
    expect(await socket.next()).toEqual({ type: "pong" });
    socket.send('{ "type": "ping" }');
    expect(await socket.next()).toEqual({ type: "pong" });
  });

  it("a malformed or unknown frame gets an error frame and the connection stays open", async () => {
    const user = await seedUser();
    const socket = await connect(user.token);
    for (const bad of ["not json", '{"type":"subscribe"}', "[1,2]", "null", '"ping"']) {
      socket.send(bad);
      const frame = await socket.next();
      expect(frame).toMatchObject({ type: "error", data: { code: "validation_failed" } });
      expect(new Date(frame.at).toISOString()).toBe(frame.at);
    }
    socket.ws.send(new Uint8Array([1, 2, 3]));
    expect(await socket.next()).toMatchObject({ type: "error", data: { code: "validation_failed" } });
    expect(socket.isClosed()).toBe(false);
    socket.send('{"type":"ping"}');
    expect(await socket.next()).toEqual({ type: "pong" });
    await fanOut(env, [user.id], readEvent(user.id));
    expect((await socket.next()).type).toBe("chat.read");
  });

  it("every device of a user receives each event, other users receive nothing", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const phone = await connect(alice.token);
    const laptop = await connect(alice.token);
    const bobs = await connect(bob.token);
    expect(await stubOf(alice.id).connections()).toBe(2);

    const event = readEvent(alice.id, 7);
    const result = await fanOut(env, [alice.id], event);
    expect(result).toEqual({ connections: 2, failedUsers: 0, unreached: [] });
    for (const device of [phone, laptop]) {
      const frame = await device.next();
      expect(frame).toEqual({ ...event, at: expect.any(String) });
      expect(new Date(frame.at).toISOString()).toBe(frame.at);
    }
    await bobs.expectSilence();
  });

  it("publish fans out to every listed user in the background, each once", async () => {
    const users = await Promise.all(Array.from({ length: 20 }, () => seedUser()));
    const outsider = await seedUser();
    const sockets = await Promise.all(users.map((user) => connect(user.token)));
    const outsiderSocket = await connect(outsider.token);

    const background: Promise<unknown>[] = [];
    const event = readEvent(users[0]!.id, 3);
    // Duplicates in the list still mean one frame per connection.
    publish(env, (promise) => background.push(promise), [...users.map((u) => u.id), users[0]!.id], event);
    expect(background).toHaveLength(1);
    await Promise.all(background);
    for (const socket of sockets) expect(await socket.next()).toMatchObject(event);
    for (const socket of sockets) await socket.expectSilence(50);
    await outsiderSocket.expectSilence();
  });

  it("a failure to notify never reaches the publisher", async () => {
    const broken = {
      ...env,
      REALTIME: {
        idFromName: () => {
          throw new Error("realtime is down");
        },
      },
    } as unknown as Env;
    const background: Promise<unknown>[] = [];
    expect(() => publish(broken, (p) => background.push(p), [newId(), newId()], readEvent(newId()))).not.toThrow();
    await expect(Promise.all(background)).resolves.toEqual([{ connections: 0, failedUsers: 2, unreached: [] }]);
    expect(() =>
      publish(
        env,
        () => {
          throw new Error("no waitUntil here");
        },
        [newId()],
        readEvent(newId()),
      ),
    ).not.toThrow();
  });

  it("a closed device stops receiving, the others keep receiving", async () => {
    const user = await seedUser();
    const gone = await connect(user.token);
    const kept = await connect(user.token);
    gone.close();
    // The close reaches the object asynchronously; wait until it has let go of the socket.
    for (let i = 0; i < 50 && (await stubOf(user.id).connections()) > 1; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(await stubOf(user.id).connections()).toBe(1);
    const result = await fanOut(env, [user.id], readEvent(user.id));
    expect(result.connections).toBe(1);
    expect((await kept.next()).type).toBe("chat.read");
  });

  it("connections survive the object being evicted (hibernation)", async () => {
    const user = await seedUser();
    const socket = await connect(user.token);
    const second = await connect(user.token);
    await evictDurableObject(stubOf(user.id));

    // The runtime answers the exact ping itself, without waking the object.
    socket.send('{"type":"ping"}');
    expect(await socket.next()).toEqual({ type: "pong" });
    // Still hibernated: evicting an object that is not running is refused.
    await expect(evictDurableObject(stubOf(user.id))).rejects.toThrow();

    const result = await fanOut(env, [user.id], readEvent(user.id, 9));
    expect(result.connections).toBe(2);
    expect((await socket.next()).data.lastReadSeq).toBe(9);
    expect((await second.next()).data.lastReadSeq).toBe(9);

    // Woken again, the object still handles client frames of hibernated sockets.
    await evictDurableObject(stubOf(user.id));
    socket.send("nonsense");
    expect((await socket.next()).type).toBe("error");
  });
});

describe("realtime in the OpenAPI document", () => {
  it("documents the routes and every frame type", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const connectOp = doc.paths["/api/v1/realtime"].get;
    expect(Object.keys(connectOp.responses)).toEqual(expect.arrayContaining(["101", "401", "426", "500"]));
    for (const type of [
      "message.created",
      "message.updated",
      "message.deleted",
      "chat.read",
      "wallet.updated",
      "transfer.received",
    ]) {
      expect(connectOp.description).toContain(`\`${type}\``);
      expect(Object.keys(doc.components.schemas.RealtimeFrame.discriminator.mapping)).toContain(type);
    }
    expect(connectOp.description).toContain("afterSeq");
    const ticketOp = doc.paths["/api/v1/realtime/tickets"].post;
    expect(Object.keys(ticketOp.responses)).toEqual(expect.arrayContaining(["201", "401", "500"]));
    expect(ticketOp.security).toEqual([{ "JWT-auth": [] }]);
  });
});
