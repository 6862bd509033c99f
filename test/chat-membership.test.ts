import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { newId } from "../src/lib/ids";
import { writeDirectorySummary } from "../src/services/chat-effects";
import { chatStub } from "../src/services/chat-objects";
import { MEMBER_PREVIEW } from "../src/services/chats";
import { flushDirectory } from "./support/chats";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, connectAs } from "./support/realtime";
import { chatFaults } from "./support/test-chat";
import { seedUser } from "./support/users";

/**
 * Issue 27/29: membership is owned by the chat object (roster.ts). Create, add and remove are
 * decided there first; the D1 index and each user's chat count follow from the chat's outbox,
 * forward only; the caps are decided by the user's own object; the chat list stays bounded.
 */
type Seeded = Awaited<ReturnType<typeof seedUser>>;

closeSocketsAfterEach();

async function group(owner: Seeded, members: Seeded[], title = "G"): Promise<string> {
  const res = await call("POST", "/api/v1/chats", {
    token: owner.token,
    body: { type: "group", title, memberIds: members.map((m) => m.id) },
  });
  expect(res.status).toBe(201);
  return res.json.data.id;
}

const remove = (caller: Seeded, chatId: string, userId: string) =>
  call("DELETE", `/api/v1/chats/${chatId}/members/${userId}`, { token: caller.token });

/** The chat's members as the D1 index has them. */
const indexed = async (chatId: string) =>
  (
    await env.DB.prepare("SELECT user_id, role FROM chat_members WHERE chat_id = ? ORDER BY user_id")
      .bind(chatId)
      .all<{ user_id: string; role: string }>()
  ).results;

/** The chat's members as its object has them, in the index's shape. */
const owned = async (chatId: string) =>
  runInDurableObject(chatStub(env, chatId), (_chat, state) =>
    state.storage.sql.exec<{ user_id: string; role: string }>("SELECT user_id, role FROM members ORDER BY user_id").toArray(),
  );

async function withFailingRemovals<T>(when: "before" | "after", fn: () => Promise<T>): Promise<T> {
  chatFaults.failRemovals = () => when;
  try {
    return await fn();
  } finally {
    chatFaults.failRemovals = null;
  }
}

describe("a removal whose chat call failed, then repeated", () => {
  for (const when of ["before", "after"] as const) {
    it(`(the call failed ${when} the chat ran it) answers 200 and the removed member reads, sends and hears nothing more`, async () => {
      const owner = await seedUser({ displayName: "Olga" });
      const member = await seedUser({ displayName: "Max" });
      const other = await seedUser();
      const chatId = await group(owner, [member, other]);
      const socket = await connectAs(member.token);
      const failed = await withFailingRemovals(when, () => remove(owner, chatId, member.id));
      expect(failed.status).toBe(500);
      const repeated = await remove(owner, chatId, member.id);
      expect(repeated.status).toBe(200);
      expect(repeated.json.data).toEqual({ chatId, userId: member.id, ownerId: owner.id });
      // Once, whichever attempt did it.
      const seen = await call("GET", `/api/v1/chats/${chatId}`, { token: owner.token });
      expect(seen.json.data.lastSeq).toBe(1);
      expect(seen.json.data.lastMessage).toMatchObject({ type: "system", content: "Olga removed Max" });
      expectError(await call("GET", `/api/v1/messages/chat/${chatId}`, { token: member.token }), 404, "chat_not_found");
      expectError(
        await call("POST", "/api/v2/messages", { token: member.token, body: { chatId, content: "still here?" } }),
        404,
        "chat_not_found",
      );
      // The removal's own system message may reach the removed member's socket; nothing after it does.
      await new Promise((resolve) => setTimeout(resolve, 100));
      for (let pending = socket.frames.length; pending > 0; pending--) await socket.next();
      expect((await call("POST", "/api/v2/messages", { token: other.token, body: { chatId, content: "after" } })).status).toBe(
        201,
      );
      await socket.expectSilence(300);
      // The index follows: the chat is gone from the member's list.
      expect((await indexed(chatId)).map((row) => row.user_id).sort()).toEqual([owner.id, other.id].sort());
      const list = await call("GET", "/api/v1/chats", { token: member.token });
      expect(list.json.data.items.map((chat: { id: string }) => chat.id)).not.toContain(chatId);
    });
  }

  it("a member who left and leaves again gets 200 again; never a member is still 404", async () => {
    const owner = await seedUser();
    const member = await seedUser();
    const chatId = await group(owner, [member]);
    expect((await remove(member, chatId, member.id)).status).toBe(200);
    expect((await remove(member, chatId, member.id)).status).toBe(200);
    const stranger = await seedUser();
    expectError(await remove(stranger, chatId, stranger.id), 404, "chat_not_found");
    expectError(await remove(owner, chatId, stranger.id), 404, "user_not_found");
  });
});

describe("the membership index follows the chat, forward only", () => {
  it("concurrent adds and removes of one user end with the index equal to the chat's members", async () => {
    const owner = await seedUser();
    const [x, y] = [await seedUser(), await seedUser()];
    const chatId = await group(owner, [y]);
    const add = () => call("POST", `/api/v1/chats/${chatId}/members`, { token: owner.token, body: { userId: x.id } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? add() : remove(owner, chatId, x.id))));
    for (const result of results) expect([200, 404]).toContain(result.status);
    await flushDirectory([chatId]);
    expect(await indexed(chatId)).toEqual(await owned(chatId));
  });

  it("an older write reaching D1 after a newer one changes nothing (an add at v2 after a removal at v3)", async () => {
    const owner = await seedUser();
    const x = await seedUser();
    const chatId = await group(owner, []);
    await flushDirectory([chatId]);
    const { identity, version } = await runInDurableObject(chatStub(env, chatId), (_chat, state) => {
      const row = state.storage.sql.exec<Record<string, string | number>>("SELECT * FROM chat").one();
      return {
        version: Number(row.index_version),
        identity: {
          type: "group" as const,
          title: String(row.title),
          directKey: null,
          createdBy: owner.id,
          createdAt: Number(row.created_at),
          routeTag: String(row.route_tag),
        },
      };
    });
    const write = (v: number, role: "member" | null, memberCount: number) =>
      writeDirectorySummary(createDb(env.DB), {
        chatId,
        identity,
        lastSeq: 0,
        lastMessage: null,
        lastActivityAt: identity.createdAt,
        carriesTransfers: false,
        markers: [],
        index: { version: v, memberCount, rows: [{ userId: x.id, role, joinedAt: 1, lastReadSeq: 0 }] },
      });
    await write(version + 2, null, 1);
    await write(version + 1, "member", 2);
    expect((await indexed(chatId)).map((row) => row.user_id)).toEqual([owner.id]);
    const count = await env.DB.prepare("SELECT member_count AS n FROM chats WHERE id = ?").bind(chatId).first<{ n: number }>();
    expect(count?.n).toBe(1);
  });
});

describe("direct chats found from the pair", () => {
  it("creating a direct chat twice concurrently yields one chat (201 then 200), at the id derived from the pair", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const [first, second] = await Promise.all([
      call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } }),
      call("POST", "/api/v1/chats", { token: b.token, body: { type: "direct", memberId: a.id } }),
    ]);
    expect([first.status, second.status].sort()).toEqual([200, 201]);
    expect(first.json.data.id).toBe(second.json.data.id);
    expect(first.json.data.id).toMatch(/^[0-9a-f]{24}$/);
    const sent = await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: b.id, content: "hi" } });
    expect(sent.json.data.chatId).toBe(first.json.data.id);
  });
});

/** Counts `n` chats (`role`) in the user's own object, as if the user were in them: the caps' seed. */
const seedChatCount = (user: Seeded, n: number, role: "owner" | "member") =>
  runInDurableObject(walletStub(env, user.id), (_wallet, state) => {
    for (let i = 0; i < n; i++) {
      state.storage.sql.exec("INSERT INTO chat_links (chat_id, role, version) VALUES (?, ?, 1)", newId(), role);
    }
  });

describe("caps (API.md: chat_limit_reached)", () => {
  it("the 101st owned group is 409 chat_limit_reached; leaving one frees a place", async () => {
    const owner = await seedUser();
    await seedChatCount(owner, 99, "owner");
    const hundredth = await group(owner, [], "100th");
    const refused = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "101st", memberIds: [] },
    });
    expectError(refused, 409, "chat_limit_reached");
    expect((await remove(owner, hundredth, owner.id)).status).toBe(200);
    expect(
      (await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "again", memberIds: [] } }))
        .status,
    ).toBe(201);
  });

  it("the 1,001st chat is 409 chat_limit_reached, whether created, opened or joined, and creates nothing", async () => {
    const full = await seedUser();
    const [a, b] = [await seedUser(), await seedUser()];
    await seedChatCount(full, 1000, "member");
    expectError(
      await call("POST", "/api/v1/chats", { token: full.token, body: { type: "direct", memberId: a.id } }),
      409,
      "chat_limit_reached",
    );
    expectError(
      await call("POST", "/api/v1/messages", { token: a.token, body: { recipientId: full.id, content: "hi" } }),
      409,
      "chat_limit_reached",
    );
    const groupId = await group(a, [b]);
    expectError(
      await call("POST", `/api/v1/chats/${groupId}/members`, { token: a.token, body: { userId: full.id } }),
      409,
      "chat_limit_reached",
    );
    expectError(
      await call("POST", "/api/v1/chats", {
        token: a.token,
        body: { type: "group", title: "with full", memberIds: [b.id, full.id] },
      }),
      409,
      "chat_limit_reached",
    );
    // Nothing was created, and a's and b's counts were given back: they still join chats.
    expect((await call("GET", `/api/v1/chats/${groupId}`, { token: a.token })).json.data.memberCount).toBe(2);
    const links = await runInDurableObject(walletStub(env, b.id), (_wallet, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM chat_links WHERE role IS NOT NULL").one(),
    );
    expect(links.n).toBe(1);
  });
});

describe("the chat list", () => {
  it("a chat list of 100 full groups is bounded: a member preview and memberCount, the full list on the chat", async () => {
    const viewer = await seedUser();
    const db = env.DB;
    const now = Date.now();
    const statements: D1PreparedStatement[] = [];
    const chatIds: string[] = [];
    for (let c = 0; c < 100; c++) {
      const chatId = newId(now);
      chatIds.push(chatId);
      statements.push(
        db
          .prepare(
            "INSERT INTO chats (id, type, title, created_by, last_seq, last_activity_at, route_tag, member_count, index_version, created_at) VALUES (?, 'group', ?, ?, 0, ?, ?, 200, 1, ?)",
          )
          .bind(chatId, `full ${c}`, viewer.id, now + c, `${c}`.padStart(12, "0"), now),
      );
      const rows = Array.from({ length: 200 }, (_, m) => (m === 0 ? viewer.id : newId(now)));
      for (let i = 0; i < rows.length; i += 10) {
        const chunk = rows.slice(i, i + 10);
        statements.push(
          db
            .prepare(
              `INSERT INTO chat_members (chat_id, user_id, role, last_read_seq, joined_at, last_activity_at) VALUES ${chunk.map(() => "(?, ?, 'member', 0, ?, ?)").join(", ")}`,
            )
            .bind(...chunk.flatMap((userId, j) => [chatId, userId, now + i + j, now])),
        );
      }
    }
    await db.batch(statements);
    const res = await call("GET", "/api/v1/chats?limit=100", { token: viewer.token });
    expect(res.status).toBe(200);
    const items = res.json.data.items as { members: unknown[]; memberCount: number }[];
    expect(items).toHaveLength(100);
    for (const item of items) {
      expect(item.members).toHaveLength(MEMBER_PREVIEW);
      expect(item.memberCount).toBe(200);
    }
    // 100 chats × 200 members would be well over a megabyte; the preview keeps it small.
    expect(res.text.length).toBeLessThan(200_000);
  });
});
