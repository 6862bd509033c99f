import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { blocks, users } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { flushDirectory } from "./support/chats";
import { call, expectError } from "./support/http";
import { seedUser, setBlocked, setSuspended } from "./support/users";

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
type Seeded = Awaited<ReturnType<typeof seedUser>>;

/** Through the blocker's object, the owner of the fact (it writes the D1 index before answering). */
async function block(blocker: Seeded, blocked: Seeded) {
  await setBlocked(blocker.id, blocked.id, true);
}

async function suspend(user: Seeded) {
  await setSuspended(user.id, true);
}

async function group(owner: Seeded, members: Seeded[], title = "Team") {
  const res = await call("POST", "/api/v1/chats", {
    token: owner.token,
    body: { type: "group", title, memberIds: members.map((m) => m.id) },
  });
  expect(res.status).toBe(201);
  return res.json.data;
}

async function send(user: Seeded, chatId: string, content: string) {
  const res = await call("POST", "/api/v2/messages", { token: user.token, body: { chatId, content } });
  expect(res.status).toBe(201);
  return res.json.data;
}

describe("POST /api/v1/chats (direct)", () => {
  it("creates the chat with 201, then answers the same chat with 200 from either side", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const first = await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ isSuccess: true, statusCode: 201, errors: null });
    const chat = first.json.data;
    expect(chat).toMatchObject({ type: "direct", title: null, lastMessage: null, lastSeq: 0, unreadCount: 0 });
    expect(chat.id).toMatch(/^[0-9a-f]{24}$/);
    expect(chat.createdAt).toMatch(ISO);
    expect(chat.members.map((m: { userId: string }) => m.userId).sort()).toEqual([a.id, b.id].sort());
    for (const m of chat.members) {
      expect(m.role).toBe("member");
      expect(m.joinedAt).toMatch(ISO);
    }
    const again = await call("POST", "/api/v1/chats", { token: b.token, body: { type: "direct", memberId: a.id } });
    expect(again.status).toBe(200);
    expect(again.json.statusCode).toBe(200);
    expect(again.json.data.id).toBe(chat.id);
  });

  it("both sides creating at the same moment get one chat", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call("POST", "/api/v1/chats", {
          token: i % 2 ? a.token : b.token,
          body: { type: "direct", memberId: i % 2 ? b.id : a.id },
        }),
      ),
    );
    expect(new Set(results.map((r) => r.json.data.id)).size).toBe(1);
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(7);
  });

  it("refuses yourself, unknown users, malformed ids, blocked and suspended callers", async () => {
    const a = await seedUser();
    const b = await seedUser();
    expectError(
      await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: a.id } }),
      400,
      "validation_failed",
    );
    expectError(
      await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: newId() } }),
      404,
      "user_not_found",
    );
    expectError(
      await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: "nope" } }),
      400,
      "validation_failed",
    );
    expectError(await call("POST", "/api/v1/chats", { token: a.token, body: { type: "other" } }), 400, "validation_failed");
    expectError(
      await call("POST", "/api/v1/chats", { body: { type: "direct", memberId: b.id } }),
      401,
      "authentication_required",
    );
    await block(b, a);
    expectError(
      await call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } }),
      403,
      "recipient_blocked",
    );
    // Blocking is one-way: the blocker can still open the chat.
    expect((await call("POST", "/api/v1/chats", { token: b.token, body: { type: "direct", memberId: a.id } })).status).toBe(201);
    const suspended = await seedUser({ status: "suspended" });
    expectError(
      await call("POST", "/api/v1/chats", { token: suspended.token, body: { type: "direct", memberId: a.id } }),
      403,
      "account_suspended",
    );
  });
});

describe("POST /api/v1/chats (group)", () => {
  it("creates a group owned by the caller, ignoring duplicates and the caller's own id", async () => {
    const owner = await seedUser();
    const m1 = await seedUser();
    const m2 = await seedUser();
    const res = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "  Trip  ", memberIds: [m1.id, m2.id, m1.id, owner.id] },
    });
    expect(res.status).toBe(201);
    const chat = res.json.data;
    expect(chat).toMatchObject({ type: "group", title: "Trip", lastSeq: 0, unreadCount: 0, lastMessage: null });
    expect(chat.members).toHaveLength(3);
    expect(chat.members.find((m: { userId: string }) => m.userId === owner.id).role).toBe("owner");
    expect(chat.members.filter((m: { role: string }) => m.role === "member")).toHaveLength(2);
  });

  it("validates title and members", async () => {
    const owner = await seedUser();
    expectError(
      await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "  " } }),
      400,
      "validation_failed",
    );
    expectError(
      await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "x", memberIds: ["bad"] } }),
      400,
      "validation_failed",
    );
    const unknown = newId();
    const res = expectError(
      await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "x", memberIds: [unknown] } }),
      404,
      "user_not_found",
    );
    expect(res.errors.join(" ")).toContain(unknown);
    const suspended = await seedUser({ status: "suspended" });
    expectError(
      await call("POST", "/api/v1/chats", { token: suspended.token, body: { type: "group", title: "x" } }),
      403,
      "account_suspended",
    );
    // A group alone is fine.
    expect((await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "Me" } })).status).toBe(201);
  });
});

describe("blocks and groups", () => {
  it("creating a group with someone who blocked you is 403 recipient_blocked, and creates nothing", async () => {
    const owner = await seedUser();
    const friend = await seedUser();
    const blocker = await seedUser();
    await block(blocker, owner);
    const res = expectError(
      await call("POST", "/api/v1/chats", {
        token: owner.token,
        body: { type: "group", title: "Sneaky", memberIds: [friend.id, blocker.id] },
      }),
      403,
      "recipient_blocked",
    );
    expect(res.errors.slice(1)).toEqual([`memberIds: user ${blocker.id} does not accept messages from you`]);
    expect((await call("GET", "/api/v1/chats", { token: owner.token })).json.data.items).toEqual([]);
    // Unknown ids are still named first (404), and blocking is one-way: the blocker may add the blocked.
    expectError(
      await call("POST", "/api/v1/chats", {
        token: owner.token,
        body: { type: "group", title: "x", memberIds: [blocker.id, newId()] },
      }),
      404,
      "user_not_found",
    );
    await group(blocker, [owner]);
  });

  it("adding someone who blocked you to your group is 403 recipient_blocked, and adds nothing", async () => {
    const owner = await seedUser();
    const blocker = await seedUser();
    const chat = await group(owner, []);
    await block(blocker, owner);
    expectError(
      await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: blocker.id } }),
      403,
      "recipient_blocked",
    );
    const after = await call("GET", `/api/v1/chats/${chat.id}`, { token: owner.token });
    expect(after.json.data.members.map((m: { userId: string }) => m.userId)).toEqual([owner.id]);
    expect(after.json.data.lastSeq).toBe(0);
    expectError(await call("GET", `/api/v1/chats/${chat.id}`, { token: blocker.token }), 404, "chat_not_found");
  });
});

describe("GET /api/v1/chats/{chatId}", () => {
  it("members see the chat; non-members and unknown ids get 404 chat_not_found; bad ids 400", async () => {
    const owner = await seedUser();
    const member = await seedUser();
    const outsider = await seedUser();
    const chat = await group(owner, [member]);
    const seen = await call("GET", `/api/v1/chats/${chat.id}`, { token: member.token });
    expect(seen.status).toBe(200);
    expect(seen.json.data.id).toBe(chat.id);
    expectError(await call("GET", `/api/v1/chats/${chat.id}`, { token: outsider.token }), 404, "chat_not_found");
    expectError(await call("GET", `/api/v1/chats/${newId()}`, { token: owner.token }), 404, "chat_not_found");
    expectError(await call("GET", "/api/v1/chats/xyz", { token: owner.token }), 400, "validation_failed");
    expectError(await call("GET", `/api/v1/chats/${chat.id}`), 401, "authentication_required");
  });

  it("suspended members can still read", async () => {
    const owner = await seedUser();
    const suspended = await seedUser({ status: "suspended" });
    const chat = await group(owner, [suspended]);
    expect((await call("GET", `/api/v1/chats/${chat.id}`, { token: suspended.token })).status).toBe(200);
  });
});

describe("GET /api/v1/chats", () => {
  it("lists my chats by most recent activity with lastMessage and unreadCount, paging with a cursor", async () => {
    const me = await seedUser();
    const others = await Promise.all([seedUser(), seedUser(), seedUser()]);
    const chats = [];
    for (const other of others) chats.push(await group(other, [me], `with ${other.id}`));
    // Activity: a message in the first chat makes it the most recent.
    const message = await send(others[0]!, chats[0].id, "ping");
    await send(others[0]!, chats[0].id, "ping again");
    await flushDirectory(chats.map((chat) => chat.id));

    const page1 = await call("GET", "/api/v1/chats?limit=2", { token: me.token });
    expect(page1.status).toBe(200);
    expect(page1.json.data.items.map((c: { id: string }) => c.id)).toEqual([chats[0].id, chats[2].id]);
    const top = page1.json.data.items[0];
    expect(top.lastSeq).toBe(2);
    expect(top.unreadCount).toBe(2);
    expect(top.lastMessage).toMatchObject({ seq: 2, content: "ping again" });
    expect(message.seq).toBe(1);
    expect(page1.json.data.nextCursor).toEqual(expect.any(String));

    const page2 = await call("GET", `/api/v1/chats?limit=2&cursor=${page1.json.data.nextCursor}`, { token: me.token });
    expect(page2.json.data.items.map((c: { id: string }) => c.id)).toEqual([chats[1].id]);
    expect(page2.json.data.nextCursor).toBeNull();

    // The sender's own view has nothing unread.
    const theirs = await call("GET", "/api/v1/chats", { token: others[0]!.token });
    expect(theirs.json.data.items[0]).toMatchObject({ id: chats[0].id, unreadCount: 0 });
  });

  it("rejects bad limits and tampered cursors", async () => {
    const me = await seedUser();
    expectError(await call("GET", "/api/v1/chats?limit=0", { token: me.token }), 400, "validation_failed");
    expectError(await call("GET", "/api/v1/chats?limit=101", { token: me.token }), 400, "validation_failed");
    expectError(await call("GET", "/api/v1/chats?cursor=garbage", { token: me.token }), 400, "validation_failed");
    const forged = btoa(JSON.stringify({ a: "x", c: 1 }));
    expectError(await call("GET", `/api/v1/chats?cursor=${forged}`, { token: me.token }), 400, "validation_failed");
    expectError(await call("GET", "/api/v1/chats"), 401, "authentication_required");
  });
});

describe("POST /api/v1/chats/{chatId}/members", () => {
  it("the owner adds a member: 200 with the chat, a system message, history readable but not unread", async () => {
    const owner = await seedUser({ displayName: "Olga" });
    const member = await seedUser();
    const newcomer = await seedUser({ displayName: "Nina" });
    const chat = await group(owner, [member]);
    await send(member, chat.id, "before you came");
    const res = await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: newcomer.id } });
    expect(res.status).toBe(200);
    expect(res.json.data.members.map((m: { userId: string }) => m.userId)).toContain(newcomer.id);
    expect(res.json.data.lastMessage).toMatchObject({ type: "system", seq: 2, senderId: owner.id, content: "Olga added Nina" });

    const theirs = await call("GET", `/api/v1/chats/${chat.id}`, { token: newcomer.token });
    expect(theirs.json.data.unreadCount).toBe(1);
    const history = await call("GET", `/api/v1/messages/chat/${chat.id}`, { token: newcomer.token });
    expect(history.json.data.items.map((m: { seq: number }) => m.seq)).toEqual([2, 1]);

    // Adding again changes nothing.
    const again = await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: newcomer.id } });
    expect(again.status).toBe(200);
    expect(again.json.data.lastSeq).toBe(2);
  });

  it("authorization: members 403, outsiders 404, direct chats 400, unknown users 404, suspended owner 403", async () => {
    const owner = await seedUser();
    const member = await seedUser();
    const outsider = await seedUser();
    const chat = await group(owner, [member]);
    const body = { userId: outsider.id };
    expectError(
      await call("POST", `/api/v1/chats/${chat.id}/members`, { token: member.token, body }),
      403,
      "insufficient_permissions",
    );
    expectError(await call("POST", `/api/v1/chats/${chat.id}/members`, { token: outsider.token, body }), 404, "chat_not_found");
    expectError(
      await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: newId() } }),
      404,
      "user_not_found",
    );
    expectError(
      await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: "x" } }),
      400,
      "validation_failed",
    );
    const direct = await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "direct", memberId: member.id } });
    expectError(
      await call("POST", `/api/v1/chats/${direct.json.data.id}/members`, { token: owner.token, body }),
      400,
      "validation_failed",
    );
    await suspend(owner);
    expectError(await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body }), 403, "account_suspended");
  });
});

describe("DELETE /api/v1/chats/{chatId}/members/{userId}", () => {
  it("the owner removes a member: 200, a system message, the removed member loses access", async () => {
    const owner = await seedUser({ displayName: "Olga" });
    const member = await seedUser({ displayName: "Max" });
    const other = await seedUser();
    const chat = await group(owner, [member, other]);
    const res = await call("DELETE", `/api/v1/chats/${chat.id}/members/${member.id}`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.json.data).toEqual({ chatId: chat.id, userId: member.id, ownerId: owner.id });
    expectError(await call("GET", `/api/v1/chats/${chat.id}`, { token: member.token }), 404, "chat_not_found");
    const seen = await call("GET", `/api/v1/chats/${chat.id}`, { token: other.token });
    expect(seen.json.data.members).toHaveLength(2);
    expect(seen.json.data.lastMessage).toMatchObject({ type: "system", content: "Olga removed Max", senderId: owner.id });
    expect(seen.json.data.unreadCount).toBe(1);
    // Already gone: a repeat answers 200 again (API.md: removals finish on repeat) and posts nothing.
    const again = await call("DELETE", `/api/v1/chats/${chat.id}/members/${member.id}`, { token: owner.token });
    expect(again.status).toBe(200);
    expect(again.json.data).toEqual({ chatId: chat.id, userId: member.id, ownerId: owner.id });
    expect((await call("GET", `/api/v1/chats/${chat.id}`, { token: other.token })).json.data.lastSeq).toBe(1);
    // Never a member: 404 user_not_found.
    expectError(
      await call("DELETE", `/api/v1/chats/${chat.id}/members/${newId()}`, { token: owner.token }),
      404,
      "user_not_found",
    );
  });

  it("a member leaves; members cannot remove others; outsiders get 404; direct chats 400", async () => {
    const owner = await seedUser();
    const m1 = await seedUser({ displayName: "Leo" });
    const m2 = await seedUser();
    const outsider = await seedUser();
    const chat = await group(owner, [m1, m2]);
    expectError(
      await call("DELETE", `/api/v1/chats/${chat.id}/members/${m2.id}`, { token: m1.token }),
      403,
      "insufficient_permissions",
    );
    expectError(
      await call("DELETE", `/api/v1/chats/${chat.id}/members/${m2.id}`, { token: outsider.token }),
      404,
      "chat_not_found",
    );
    expectError(await call("DELETE", `/api/v1/chats/${chat.id}/members/zz`, { token: owner.token }), 400, "validation_failed");
    const left = await call("DELETE", `/api/v1/chats/${chat.id}/members/${m1.id}`, { token: m1.token });
    expect(left.status).toBe(200);
    expect(left.json.data.ownerId).toBe(owner.id);
    const seen = await call("GET", `/api/v1/chats/${chat.id}`, { token: owner.token });
    expect(seen.json.data.lastMessage.content).toBe("Leo left");
    const direct = await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "direct", memberId: m2.id } });
    expectError(
      await call("DELETE", `/api/v1/chats/${direct.json.data.id}/members/${owner.id}`, { token: owner.token }),
      400,
      "validation_failed",
    );
  });

  it("when the owner leaves, the longest-standing member becomes owner", async () => {
    const owner = await seedUser();
    const early = await seedUser();
    const chat = await group(owner, [early]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const late = await seedUser();
    await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: late.id } });
    const res = await call("DELETE", `/api/v1/chats/${chat.id}/members/${owner.id}`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.json.data.ownerId).toBe(early.id);
    const seen = await call("GET", `/api/v1/chats/${chat.id}`, { token: early.token });
    expect(seen.json.data.members.find((m: { userId: string }) => m.userId === early.id).role).toBe("owner");
    // The new owner can now add people; the other member still cannot.
    expect(
      (await call("POST", `/api/v1/chats/${chat.id}/members`, { token: early.token, body: { userId: owner.id } })).status,
    ).toBe(200);
    expectError(
      await call("POST", `/api/v1/chats/${chat.id}/members`, { token: late.token, body: { userId: owner.id } }),
      403,
      "insufficient_permissions",
    );
    // The last person out leaves an empty chat with no owner.
    await call("DELETE", `/api/v1/chats/${chat.id}/members/${late.id}`, { token: late.token });
    await call("DELETE", `/api/v1/chats/${chat.id}/members/${owner.id}`, { token: owner.token });
    const last = await call("DELETE", `/api/v1/chats/${chat.id}/members/${early.id}`, { token: early.token });
    expect(last.json.data.ownerId).toBeNull();
  });
});

describe("POST /api/v1/chats/{chatId}/read", () => {
  it("moves the marker forward only and answers the unread count; above lastSeq is 400", async () => {
    const owner = await seedUser();
    const reader = await seedUser();
    const outsider = await seedUser();
    const chat = await group(owner, [reader]);
    for (let i = 0; i < 5; i++) await send(owner, chat.id, `m${i}`);
    const read = (seq: unknown, user = reader) =>
      call("POST", `/api/v1/chats/${chat.id}/read`, { token: user.token, body: { seq } });
    const r1 = await read(3);
    expect(r1.status).toBe(200);
    expect(r1.json.data).toEqual({ chatId: chat.id, lastReadSeq: 3, unreadCount: 2 });
    const back = await read(1);
    expect(back.json.data).toEqual({ chatId: chat.id, lastReadSeq: 3, unreadCount: 2 });
    expectError(await read(6), 400, "validation_failed");
    expectError(await read(-1), 400, "validation_failed");
    expectError(await read(1.5), 400, "validation_failed");
    expectError(await read("2"), 400, "validation_failed");
    expectError(await read(1, outsider), 404, "chat_not_found");
    expect((await read(5)).json.data).toEqual({ chatId: chat.id, lastReadSeq: 5, unreadCount: 0 });
    const seen = await call("GET", `/api/v1/chats/${chat.id}`, { token: reader.token });
    expect(seen.json.data.unreadCount).toBe(0);
    // Suspended members can still mark read.
    await suspend(reader);
    expect((await read(5)).status).toBe(200);
  });
});

describe("large groups and long chat lists (D1 binds at most 100 parameters per statement)", () => {
  it("creates a group of 101 and lists 120 chats a hundred at a time", async () => {
    const owner = await seedUser();
    const invited = await Promise.all(Array.from({ length: 100 }, () => seedUser()));
    const big = await group(owner, invited, "Big");
    expect(big.members).toHaveLength(101);

    const chatIds = [big.id];
    // The owner is in 120 chats but owns at most MAX_GROUPS_OWNED (100): the others' groups.
    for (let i = 0; i < 119; i++) chatIds.push((await group(invited[i % 100]!, [owner], `g${i}`)).id);
    // A message in every chat so each list item carries a lastMessage.
    for (const chatId of chatIds.slice(0, 110)) await send(owner, chatId, `in ${chatId}`);
    await flushDirectory(chatIds);
    const page1 = await call("GET", "/api/v1/chats?limit=100", { token: owner.token });
    expect(page1.status).toBe(200);
    expect(page1.json.data.items).toHaveLength(100);
    expect(page1.json.data.items.every((c: { lastMessage: unknown }) => c.lastMessage !== null)).toBe(true);
    const page2 = await call("GET", `/api/v1/chats?limit=100&cursor=${page1.json.data.nextCursor}`, { token: owner.token });
    expect(page2.json.data.items).toHaveLength(20);
    expect(page2.json.data.nextCursor).toBeNull();
    const all = [...page1.json.data.items, ...page2.json.data.items].map((c: { id: string }) => c.id);
    expect(new Set(all)).toEqual(new Set(chatIds));
    // Most recent activity first: the ten chats without messages come last.
    expect(new Set(all.slice(110))).toEqual(new Set(chatIds.slice(110)));
    // 120 creations (each decided by the chat and counted by its members' objects) and 110 sends.
  }, 120_000);
});

describe("authentication on every chat and message route", () => {
  it("answers 401 without a token", async () => {
    const id = newId();
    const routes: [string, string, unknown?][] = [
      ["POST", "/api/v1/chats", { type: "group", title: "x" }],
      ["GET", "/api/v1/chats"],
      ["GET", `/api/v1/chats/${id}`],
      ["POST", `/api/v1/chats/${id}/members`, { userId: id }],
      ["DELETE", `/api/v1/chats/${id}/members/${id}`],
      ["POST", `/api/v1/chats/${id}/read`, { seq: 1 }],
      ["POST", "/api/v1/messages", { recipientId: id, content: "x" }],
      ["POST", "/api/v2/messages", { chatId: id, content: "x" }],
      ["GET", `/api/v1/messages/chat/${id}`],
      ["PATCH", `/api/v1/messages/${id}`, { content: "x" }],
      ["DELETE", `/api/v1/messages/${id}`],
    ];
    for (const [method, path, body] of routes) {
      expectError(await call(method, path, body === undefined ? {} : { body }), 401, "authentication_required");
      expectError(
        await call(method, path, { ...(body === undefined ? {} : { body }), token: "not.a.jwt" }),
        401,
        "invalid_token",
      );
    }
  });
});

describe("Chat and Message in the OpenAPI document", () => {
  it("document lastMessage and creditTransfer as $ref-or-null, so a null validates", async () => {
    const doc = await call("GET", "/openapi.json");
    expect(doc.status).toBe(200);
    const schemas = doc.json.components.schemas;
    expect(schemas.Chat.properties.lastMessage.anyOf).toEqual([{ $ref: "#/components/schemas/Message" }, { type: "null" }]);
    expect(schemas.Message.properties.creditTransfer.anyOf).toEqual([
      { $ref: "#/components/schemas/CreditTransferPayload" },
      { type: "null" },
    ]);
    const v2 = doc.json.paths["/api/v2/messages"].post;
    expect(v2.summary).toBe("Send a new message (v2)");
    expect(v2.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ in: "header", name: "Idempotency-Key" })]));
    expect(Object.keys(v2.responses)).toEqual(expect.arrayContaining(["200", "201", "400", "401", "403", "404", "409", "429"]));
    expect(doc.json.paths["/api/v1/messages/chat/{chatId}"].get.summary).toBe("List messages in a chat room");
  });
});
