import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { count, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { chatMembers, chats } from "../src/db/schema";
import type { RealtimeDO } from "../src/durable-objects/realtime/realtime-do";
import { getConfig } from "../src/lib/config";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach } from "./support/realtime";
import { seedUser } from "./support/users";
import { NO_RATE_LIMIT } from "./support/wallets";

/**
 * Issue 23: a group's fan-out is bounded (MAX_GROUP_MEMBERS, 409 `group_full`), and the pushes of
 * edits, deletes, read markers and member changes reach only members with an open socket, and
 * only when something changed. Requests run with `vars`, so `call` waits for their background
 * pushes and the RealtimeDO call counts are final when it returns.
 */

type Seeded = Awaited<ReturnType<typeof seedUser>>;
const db = createDb(env.DB);
const { connect } = closeSocketsAfterEach();
type Vars = Partial<Record<keyof Env, string>>;
const SMALL: Vars = { ...NO_RATE_LIMIT, MAX_GROUP_MEMBERS: "3" };

const deliverCalls = (userId: string) =>
  runInDurableObject(env.REALTIME.get(env.REALTIME.idFromName(userId)), (instance: RealtimeDO) => instance.deliverCalls);

/**
 * How many `deliver` calls each of `users` got while `action` ran. A chat pushes behind its answer
 * (its own waitUntil, which the request does not wait for), so the counts are read until they
 * hold still for 200 ms (at most 3 s): a loaded machine delays the push, never removes it.
 */
async function callsDuring(users: Seeded[], action: () => Promise<unknown>): Promise<number[]> {
  const counts = () => Promise.all(users.map((user) => deliverCalls(user.id)));
  const before = await counts();
  await action();
  let after = await counts();
  for (let stillFor = 0, waited = 0; stillFor < 200 && waited < 3_000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = await counts();
    stillFor = now.every((calls, i) => calls === after[i]) ? stillFor + 50 : 0;
    after = now;
  }
  return after.map((calls, i) => calls - before[i]!);
}

const createGroup = (owner: Seeded, members: Seeded[], vars: Vars = SMALL) =>
  call("POST", "/api/v1/chats", {
    token: owner.token,
    body: { type: "group", title: "Bounded", memberIds: members.map((member) => member.id) },
    vars,
  });
const addMember = (owner: Seeded, chatId: string, user: Seeded, vars: Vars = SMALL) =>
  call("POST", `/api/v1/chats/${chatId}/members`, { token: owner.token, body: { userId: user.id }, vars });

async function memberCount(chatId: string) {
  const row = await db.select({ n: count() }).from(chatMembers).where(eq(chatMembers.chatId, chatId)).get();
  return row?.n ?? 0;
}

describe("MAX_GROUP_MEMBERS", () => {
  it("defaults to 200 and is set in every environment", () => {
    const { MAX_GROUP_MEMBERS: _, ...withoutVar } = env;
    expect(getConfig(withoutVar as unknown as Env).maxGroupMembers).toBe(200);
    expect(getConfig(env).maxGroupMembers).toBe(200);
    for (const environment of Object.values(env.TEST_WRANGLER_ENVIRONMENTS)) {
      expect(environment.vars.MAX_GROUP_MEMBERS).toBe("200");
    }
  });

  it("creating a group of more people than the limit (the owner counts) is 409 group_full and creates nothing", async () => {
    const owner = await seedUser();
    const others = [await seedUser(), await seedUser(), await seedUser()];
    const before = await db.select({ n: count() }).from(chats).where(eq(chats.createdBy, owner.id)).get();
    const refused = expectError(await createGroup(owner, others), 409, "group_full");
    expect(refused.errors[1]).toContain("at most 3 members");
    const after = await db.select({ n: count() }).from(chats).where(eq(chats.createdBy, owner.id)).get();
    expect(after?.n).toBe(before?.n);
    // Exactly at the limit is fine, duplicates and the owner's own id do not count twice.
    const res = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "Full", memberIds: [others[0]!.id, others[1]!.id, others[0]!.id, owner.id] },
      vars: SMALL,
    });
    expect(res.status).toBe(201);
    expect(res.json.data.members).toHaveLength(3);
  });

  it("adding past the limit is 409 group_full and changes nothing; re-adding a member of a full group is still 200", async () => {
    const owner = await seedUser();
    const [ann, ben, cat] = [await seedUser(), await seedUser(), await seedUser()];
    const chat = (await createGroup(owner, [ann])).json.data;
    expect((await addMember(owner, chat.id, ben)).status).toBe(200);
    const full = await call("GET", `/api/v1/chats/${chat.id}`, { token: owner.token });

    expectError(await addMember(owner, chat.id, cat), 409, "group_full");
    const after = await call("GET", `/api/v1/chats/${chat.id}`, { token: owner.token });
    expect(after.json.data.members).toEqual(full.json.data.members);
    expect(after.json.data.lastSeq).toBe(full.json.data.lastSeq);
    expect((await addMember(owner, chat.id, ann)).status).toBe(200);
    // The default limit (200) lets the same add through.
    expect((await addMember(owner, chat.id, cat, NO_RATE_LIMIT)).status).toBe(200);
  });

  it("two adds racing for the last place: one wins, the other is 409 group_full", async () => {
    const owner = await seedUser();
    const [ann, ben, cat] = [await seedUser(), await seedUser(), await seedUser()];
    const chat = (await createGroup(owner, [ann])).json.data;
    const results = await Promise.all([addMember(owner, chat.id, ben), addMember(owner, chat.id, cat)]);
    expect(results.map((res) => res.status).sort()).toEqual([200, 409]);
    expect(await memberCount(chat.id)).toBe(3);
  });

  it("both operations document 409 group_full", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    for (const operation of [doc.paths["/api/v1/chats"].post, doc.paths["/api/v1/chats/{chatId}/members"].post]) {
      expect(operation.responses["409"]).toEqual({ $ref: "#/components/responses/Conflict" });
      expect(operation.description).toContain("`group_full`");
      expect(operation.description).toContain("MAX_GROUP_MEMBERS");
    }
  });
});

describe("chat events reach every member's realtime object once, never a non-member, and only when something changed", () => {
  // A chat holds no presence (a connect tells no chat anything): each member's realtime object is
  // called once per change and alone knows whether it has a socket to deliver to.
  it("edit, delete, read marker, add and remove: each member's realtime object once, non-members never", async () => {
    const owner = await seedUser();
    const [ann, ben, cat] = [await seedUser(), await seedUser(), await seedUser()];
    const chat = (await createGroup(owner, [ann, ben], NO_RATE_LIMIT)).json.data;
    const sent = await call("POST", "/api/v2/messages", {
      token: owner.token,
      body: { chatId: chat.id, content: "first" },
      vars: NO_RATE_LIMIT,
    });
    expect(sent.status).toBe(201);
    const annSocket = await connect(ann.token);
    const everyone = [owner, ann, ben, cat];

    const edit = () =>
      call("PATCH", `/api/v1/messages/${sent.json.data.id}`, {
        token: owner.token,
        body: { content: "edited" },
        vars: NO_RATE_LIMIT,
      });
    expect(await callsDuring(everyone, edit)).toEqual([1, 1, 1, 0]);
    expect(await annSocket.next()).toMatchObject({ type: "message.updated", data: { content: "edited" } });

    const read = (seq: number) =>
      call("POST", `/api/v1/chats/${chat.id}/read`, { token: ben.token, body: { seq }, vars: NO_RATE_LIMIT });
    expect(await callsDuring(everyone, () => read(sent.json.data.seq))).toEqual([1, 1, 1, 0]);
    expect(await annSocket.next()).toMatchObject({ type: "chat.read", data: { userId: ben.id } });

    const add = () => addMember(owner, chat.id, cat, NO_RATE_LIMIT);
    expect(await callsDuring(everyone, add)).toEqual([1, 1, 1, 1]);
    expect(await annSocket.next()).toMatchObject({ type: "message.created", data: { type: "system" } });

    const remove = () =>
      call("DELETE", `/api/v1/chats/${chat.id}/members/${ann.id}`, { token: owner.token, vars: NO_RATE_LIMIT });
    // The removed member hears of it too.
    expect(await callsDuring(everyone, remove)).toEqual([1, 1, 1, 1]);
    expect(await annSocket.next()).toMatchObject({ type: "message.created", data: { type: "system" } });

    const catSocket = await connect(cat.token);
    const del = () => call("DELETE", `/api/v1/messages/${sent.json.data.id}`, { token: owner.token, vars: NO_RATE_LIMIT });
    expect(await callsDuring(everyone, del)).toEqual([1, 0, 1, 1]);
    expect(await catSocket.next()).toMatchObject({ type: "message.deleted", data: { content: null } });
  });

  it("a read marker that does not move sends nothing", async () => {
    const owner = await seedUser();
    const ann = await seedUser();
    const chat = (await createGroup(owner, [ann], NO_RATE_LIMIT)).json.data;
    for (const content of ["one", "two"]) {
      const res = await call("POST", "/api/v2/messages", {
        token: ann.token,
        body: { chatId: chat.id, content },
        vars: NO_RATE_LIMIT,
      });
      expect(res.status).toBe(201);
    }
    const annSocket = await connect(ann.token);
    const read = (seq: number) =>
      call("POST", `/api/v1/chats/${chat.id}/read`, { token: owner.token, body: { seq }, vars: NO_RATE_LIMIT });

    expect(await callsDuring([ann], () => read(2))).toEqual([1]);
    expect(await annSocket.next()).toMatchObject({ type: "chat.read", data: { lastReadSeq: 2 } });
    let again: Awaited<ReturnType<typeof read>> | undefined;
    expect(
      await callsDuring([ann], async () => {
        again = await read(2);
        await read(1);
      }),
    ).toEqual([0]);
    expect(again?.json.data).toEqual({ chatId: chat.id, lastReadSeq: 2, unreadCount: 0 });
    await annSocket.expectSilence(100);
  });
});
