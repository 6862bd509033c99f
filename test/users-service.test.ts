import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../src/lib/ids";
import { countingEverywhere } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { seedUser, setBlocked } from "./support/users";
import { rowsOf } from "./support/wallets";

/**
 * Who may open a chat with whom (ARCHITECTURE.md §11): each person's own object decides, when the
 * chat asks it to admit them (wallet-do.ts `admitChat`): the creator's status, whether the others
 * exist and have blocked the creator, and everyone's caps. D1's `users.status` and `blocks` are
 * indexes for lists, never read for it.
 */
type Seeded = Awaited<ReturnType<typeof seedUser>>;

const openDirect = (from: Seeded, memberId: string, DB?: D1Database) =>
  call("POST", "/api/v1/chats", {
    token: from.token,
    body: { type: "direct", memberId },
    ...(DB ? { bindings: { DB } } : {}),
  });

const openGroup = (from: Seeded, memberIds: string[]) =>
  call("POST", "/api/v1/chats", { token: from.token, body: { type: "group", title: "Group", memberIds } });

/** The chats a user's own object counts them in. */
const countedChats = (userId: string) => rowsOf(userId, "SELECT chat_id FROM chat_links WHERE role IS NOT NULL");

describe("opening a chat: the people's own objects decide", () => {
  it("in order: the creator suspended, then an unknown user, then a block (one way only); a suspended user can be reached", async () => {
    const [a, b, s] = [await seedUser(), await seedUser(), await seedUser({ status: "suspended" })];
    const missing = newId();
    expectError(await openDirect(s, missing), 403, "account_suspended");
    const unknown = expectError(await openDirect(a, missing), 404, "user_not_found");
    // A direct chat is opened by POST /chats (memberId) or a v1 message (recipientId): no field named.
    expect(unknown.errors).toContain(`No user with id ${missing}`);
    await setBlocked(b.id, a.id, true);
    expectError(await openDirect(a, b.id), 403, "recipient_blocked");
    expect((await openDirect(b, a.id)).status).toBe(201);
    expect((await openDirect(a, s.id)).status).toBe(201);
  });

  it("a group names every unknown id, is refused by a member who blocked its creator, and leaves nobody counted", async () => {
    const [a, b, c] = [await seedUser(), await seedUser(), await seedUser()];
    const missing = [newId(), newId()];
    const unknown = expectError(await openGroup(a, [b.id, ...missing]), 404, "user_not_found");
    expect(unknown.errors.join(" ")).toContain(missing[0]);
    expect(unknown.errors.join(" ")).toContain(missing[1]);
    await setBlocked(c.id, a.id, true);
    expectError(await openGroup(a, [b.id, c.id]), 403, "recipient_blocked");
    expect([await countedChats(a.id), await countedChats(b.id), await countedChats(c.id)]).toEqual([[], [], []]);
  });

  it("an index that says otherwise changes nothing: the owners' facts decide", async () => {
    const [a, b, c] = [await seedUser(), await seedUser(), await seedUser()];
    // The index says b blocked a and a is suspended; their owners say neither.
    await env.DB.prepare("INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)").bind(b.id, a.id, 1).run();
    await env.DB.prepare("UPDATE users SET status = 'suspended' WHERE id = ?").bind(a.id).run();
    expect((await openDirect(a, b.id)).status).toBe(201);
    expect((await openGroup(a, [b.id])).status).toBe(201);
    // c's owner says c blocked a; the index no longer does.
    await setBlocked(c.id, a.id, true);
    await env.DB.prepare("DELETE FROM blocks WHERE blocker_id = ?").bind(c.id).run();
    expectError(await openDirect(a, c.id), 403, "recipient_blocked");
  });

  it("reads no D1: the Worker makes no query and the chat's object only writes the directory row it lists at once", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    const { value, roundTrips } = await countingEverywhere(env.DB, (d1) => openDirect(a, b.id, d1));
    expect(value.status, value.text).toBe(201);
    expect(roundTrips).toHaveLength(1);
    expect(roundTrips[0]).toMatch(/^batch of \d+: insert into "chats"/);
  });
});
