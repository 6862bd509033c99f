import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDb } from "../src/db/client";
import { chatMembers, chats } from "../src/db/schema";
import { walletStub } from "../src/durable-objects/wallet/wallet-stub";
import { directChatIdOf } from "../src/lib/direct-chat";
import { newId } from "../src/lib/ids";
import { chatStub, newRouteTag } from "../src/services/chat-objects";
import { queryChat } from "./support/chats";
import { countingD1, countingEverywhere } from "./support/d1-counter";
import { call, expectError } from "./support/http";
import { closeSocketsAfterEach, connectAs } from "./support/realtime";
import { chatFaults } from "./support/test-chat";
import { seedUser, setBlocked, setSuspended } from "./support/users";
import { NO_RATE_LIMIT, rowsOf, runRecovery, seedWalletUser, transfer } from "./support/wallets";

/**
 * Account facts (ARCHITECTURE.md §11): the user's object owns status and blocks, each change a
 * new version; chats hold copies stamped with it, applied forward only, delivered by the owner's
 * outbox until acknowledged (wallet/account.ts, wallet/facts-outbox.ts).
 */
type Seeded = Awaited<ReturnType<typeof seedUser>>;

const send = (user: Seeded, chatId: string, content = "hi") =>
  call("POST", "/api/v2/messages", { token: user.token, body: { chatId, content } });

/** Room for the many chats a test makes (the caps and the group-add allowance are not what is tested). */
const ROOMY = { MAX_GROUPS_OWNED: "1000", MAX_CHATS_PER_USER: "1000", RATE_LIMIT_GROUP_ADDS_PER_MINUTE: "100000" };

/** Chats made as the product makes them (the chat object decides; the directory follows). `direct`: the pair's direct chat. */
async function seedChats(owner: Seeded, other: Seeded, count: number, direct = false): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = direct ? { type: "direct", memberId: other.id } : { type: "group", title: "Seeded", memberIds: [other.id] };
    const res = await call("POST", "/api/v1/chats", { token: owner.token, body, vars: ROOMY });
    expect([200, 201], res.text).toContain(res.status);
    ids.push(res.json.data.id);
  }
  return ids;
}

/**
 * Rows in the directory's membership index only, with no chat object behind them: what a walk over
 * "every chat of the user" would visit. Cheap, so a test can give a user 1,000 chats.
 */
async function seedIndexRows(owner: Seeded, other: Seeded, count: number): Promise<void> {
  const db = createDb(env.DB);
  const now = Date.now();
  const ids = Array.from({ length: count }, () => newId(now));
  // One statement per row: D1 binds at most 100 variables per statement.
  for (let from = 0; from < ids.length; from += 30) {
    const statements = ids.slice(from, from + 30).flatMap((id) => [
      db.insert(chats).values({
        id,
        type: "group" as const,
        title: "Indexed",
        directKey: null,
        createdBy: owner.id,
        lastActivityAt: now,
        routeTag: newRouteTag(),
        createdAt: now,
      }),
      db.insert(chatMembers).values([
        { chatId: id, userId: owner.id, role: "owner" as const, joinedAt: now, lastActivityAt: now },
        { chatId: id, userId: other.id, role: "member" as const, joinedAt: now, lastActivityAt: now },
      ]),
    ]);
    await db.batch(statements as [(typeof statements)[number], ...(typeof statements)[number][]]);
  }
}

/** The member's status as the chat holds it (undefined: the chat has not started yet). */
const suspendedIn = async (chatId: string, userId: string) => {
  const started = await queryChat(chatId, "SELECT 1 FROM sqlite_master WHERE name = 'members'");
  if (started.length === 0) return undefined;
  return (await queryChat<{ suspended: number }>(chatId, "SELECT suspended FROM members WHERE user_id = ?", userId))[0]
    ?.suspended;
};

const d1User = (userId: string) =>
  env.DB.prepare("SELECT status, facts_version FROM users WHERE id = ?")
    .bind(userId)
    .first<{ status: string; facts_version: number }>();

afterEach(() => {
  chatFaults.refuseFacts.clear();
  chatFaults.holdMemberFacts = null;
  chatFaults.failSummaries = false;
});

describe("block facts move forward only", () => {
  it("an unblock delivered after a later block does not re-open the chat", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    const [chatId] = await seedChats(a, b, 1, true);
    await setBlocked(b.id, a.id, true);
    await setBlocked(b.id, a.id, false);
    await setBlocked(b.id, a.id, true);
    expectError(await send(a, chatId!), 403, "recipient_blocked");
    // The unblock (version 2), delivered late and twice, after the block (version 3) landed.
    const lateUnblock = { kind: "block" as const, blockerId: b.id, blockedId: a.id, blocked: false, version: 2 };
    await chatStub(env, chatId!).applyFacts(chatId!, [lateUnblock]);
    await chatStub(env, chatId!).applyFacts(chatId!, [lateUnblock]);
    expectError(await send(a, chatId!), 403, "recipient_blocked");
    // The D1 index follows the owner, at its version.
    expect(await d1User(b.id)).toEqual({ status: "active", facts_version: 3 });
    const indexed = await env.DB.prepare("SELECT 1 FROM blocks WHERE blocker_id = ? AND blocked_id = ?").bind(b.id, a.id).all();
    expect(indexed.results).toHaveLength(1);
    // And the latest wins the other way too: the next unblock lets the send through.
    await setBlocked(b.id, a.id, false);
    expect((await send(a, chatId!)).status).toBe(201);
  });

  it("a late block of an older version is refused by the D1 index too", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    await setBlocked(b.id, a.id, true);
    await setBlocked(b.id, a.id, false);
    const { writeFactsIndex } = await import("../src/services/account-facts");
    await writeFactsIndex(createDb(env.DB), b.id, [{ version: 1, change: { kind: "block", blockedId: a.id, blocked: true } }]);
    const indexed = await env.DB.prepare("SELECT 1 FROM blocks WHERE blocker_id = ?").bind(b.id).all();
    expect(indexed.results).toHaveLength(0);
  });
});

describe("a sender's copy of its recipients' blocks", () => {
  it("follows the blocker's latest change, and an older unblock delivered late does not re-open payments", async () => {
    const [a, b] = [await seedWalletUser(), await seedWalletUser()];
    // The first payment asks b's object and keeps its answer as a's copy.
    expect((await transfer(a.token, { recipientId: b.id, amount: 1 })).status).toBe(201);
    await setBlocked(b.id, a.id, true);
    await setBlocked(b.id, a.id, false);
    await setBlocked(b.id, a.id, true);
    expectError(await transfer(a.token, { recipientId: b.id, amount: 1 }), 403, "recipient_blocked");
    await walletStub(env, a.id).applyPeerFact(b.id, { blocked: false, version: 2 });
    expectError(await transfer(a.token, { recipientId: b.id, amount: 1 }), 403, "recipient_blocked");
    expect(await rowsOf(a.id, `SELECT blocks_me, version FROM peer_facts WHERE user_id = '${b.id}'`)).toEqual([
      { blocks_me: 1, version: 3 },
    ]);
    await setBlocked(b.id, a.id, false);
    expect((await transfer(a.token, { recipientId: b.id, amount: 1 })).status).toBe(201);
  });
});

describe("status facts move forward only", () => {
  it("a reinstatement delivered after a later suspension does not lift it", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    const [chatId] = await seedChats(a, b, 1);
    await setSuspended(a.id, true);
    await setSuspended(a.id, false);
    await setSuspended(a.id, true);
    expectError(await send(a, chatId!), 403, "account_suspended");
    const lateReinstatement = { kind: "suspended" as const, userId: a.id, suspended: false, version: 2 };
    await chatStub(env, chatId!).applyFacts(chatId!, [lateReinstatement]);
    expectError(await send(a, chatId!), 403, "account_suspended");
    expect(await d1User(a.id)).toEqual({ status: "suspended", facts_version: 3 });
  });
});

describe("a fact arriving while a chat loads", () => {
  it("is applied once the chat's creation has finished, never dropped", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    let release = () => {};
    chatFaults.holdMemberFacts = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Both members' objects admitted the chat, answering their facts (no block yet); the creation is held before keeping them.
    const [reads, told] = [chatFaults.memberFactsRead, chatFaults.factsCalls];
    const creating = call("POST", "/api/v1/chats", { token: a.token, body: { type: "direct", memberId: b.id } });
    await vi.waitFor(() => expect(chatFaults.memberFactsRead).toBe(reads + 2), { timeout: 5_000, interval: 10 });
    // Meanwhile b blocks a: the owner writes the index and tells the pair's chat, still being created.
    const blocking = setBlocked(b.id, a.id, true);
    await vi.waitFor(() => expect(chatFaults.factsCalls).toBe(told + 1), { timeout: 5_000, interval: 10 });
    chatFaults.holdMemberFacts = null;
    release();
    await blocking;
    const chat = await creating;
    expect(chat.status, chat.text).toBe(201);
    expectError(await send(a, chat.json.data.id, "after the block"), 403, "recipient_blocked");
  });
});

describe("a user in more than 100 chats", () => {
  it("hears a suspension in every chat within 1 s of the answer, and the reinstatement likewise", async () => {
    const admin = await seedUser({ role: "admin" });
    const [a, b] = [await seedUser(), await seedUser()];
    const chatIds = await seedChats(a, b, 130);
    const res = await call("POST", `/api/v1/admin/users/${a.id}/suspension`, { token: admin.token, body: { reason: "test" } });
    expect(res.status).toBe(200);
    // Every chat holds it within 1 s of the answer (here: by the answer, unless the machine is slow).
    await vi.waitFor(
      async () => {
        const states = await Promise.all(chatIds.map((chatId) => suspendedIn(chatId, a.id)));
        expect(states.filter((s) => s !== 1)).toEqual([]);
      },
      { timeout: 1_000, interval: 50 },
    );
    expect((await call("DELETE", `/api/v1/admin/users/${a.id}/suspension`, { token: admin.token, body: {} })).status).toBe(200);
    const after = await Promise.all(chatIds.map((chatId) => suspendedIn(chatId, a.id)));
    expect(after.filter((s) => s !== 0)).toEqual([]);
    // The audit rows went to D1 with the index (one batch each).
    const audit = await env.DB.prepare("SELECT action FROM admin_audit WHERE target_id = ? ORDER BY created_at").bind(a.id).all();
    expect(audit.results.map((row) => row.action)).toEqual(["suspension", "reinstatement"]);
  });
});

describe("a chat the directory does not list yet", () => {
  it("hears a suspension and a block: the owner tells the chats it admitted itself to, not those the index lists", async () => {
    const [a, b, c] = [await seedUser(), await seedUser(), await seedUser()];
    chatFaults.failSummaries = true;
    const [group] = await seedChats(a, b, 1);
    const [direct] = await seedChats(a, c, 1, true);
    const indexed = await env.DB.prepare("SELECT count(*) AS n FROM chat_members WHERE chat_id IN (?, ?)")
      .bind(group, direct)
      .first();
    expect(indexed).toEqual({ n: 0 });
    await setSuspended(a.id, true);
    expect([await suspendedIn(group!, a.id), await suspendedIn(direct!, a.id)]).toEqual([1, 1]);
    await setSuspended(a.id, false);
    await setBlocked(c.id, a.id, true);
    expectError(await send(a, direct!), 403, "recipient_blocked");
    expect((await send(a, group!)).status).toBe(201);
  });
});

describe("an undeliverable chat", () => {
  it("keeps being retried with back-off, with no last attempt, and hears as soon as it answers", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    const [down, up] = await seedChats(a, b, 2);
    chatFaults.refuseFacts.add(down!);
    await setSuspended(a.id, true);
    expect(await suspendedIn(up!, a.id)).toBe(1);
    for (let round = 0; round < 15; round++) expect(await runRecovery(a.id, 61_000)).toBe(true);
    const owed = await rowsOf(a.id, "SELECT target, attempts FROM facts_targets");
    expect(owed).toEqual([{ target: `chat:${down}`, attempts: 15 }]);
    chatFaults.refuseFacts.delete(down!);
    expect(await runRecovery(a.id, 61_000)).toBe(true);
    expect(await suspendedIn(down!, a.id)).toBe(1);
    expect(await rowsOf(a.id, "SELECT target FROM facts_targets")).toEqual([]);
  });
});

describe("realtime connects", () => {
  closeSocketsAfterEach();

  it("a connect in 1,000 chats makes a bounded number of calls: no chat is told anything", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    // 999 chats in the index (what a walk over the user's chats would visit) and one real chat.
    await seedIndexRows(a, b, 999);
    const chatIds = await seedChats(a, b, 1);
    chatFaults.factsCalls = 0;
    const socket = await connectAs(a.token);
    expect(chatFaults.factsCalls).toBe(0);
    // Frames still reach the socket: the chat pushes to every member's realtime object.
    expect((await send(b, chatIds[0]!, "to a connected member")).status).toBe(201);
    expect((await socket.next()).type).toBe("message.created");
  });
});

describe("who exists for a transfer", () => {
  it("an id no registration opened is 404 user_not_found and its object keeps no storage", async () => {
    const a = await seedUser();
    const stranger = newId();
    const res = await call("POST", "/api/v1/messages/credit-transfer", {
      token: a.token,
      body: { recipientId: stranger, amount: 1 },
    });
    expectError(res, 404, "user_not_found");
    const tables = await runInDurableObject(walletStub(env, stranger), (_instance, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'").toArray(),
    );
    expect(tables).toEqual([]);
  });
});

/**
 * The chats' directory summaries (the chat list's index), written by each chat's alarm behind its
 * answers, coalesced (docs/chats.md, "The directory"): not on any request's path, so not counted.
 */
const onRequestPaths = (roundTrips: string[]) =>
  roundTrips.filter((q) => !/^batch of \d+: update "chats" set "last_seq"/.test(q));

/**
 * What earlier requests left behind their answers (the chats' outboxes, up to 250 ms later) lands
 * first, so a count sees only the request it measures.
 */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1_000));

describe("a transfer makes no D1 query", () => {
  /** One transfer over HTTP, counting the Worker's D1 round trips and every object's, apart. */
  async function counted(from: Seeded, to: Seeded) {
    const worker = countingD1(env.DB);
    const { value, roundTrips } = await countingEverywhere(env.DB, () =>
      call("POST", "/api/v1/messages/credit-transfer", {
        token: from.token,
        body: { recipientId: to.id, amount: 1 },
        vars: NO_RATE_LIMIT,
        bindings: { DB: worker.d1 },
      }),
    );
    expect(value.status).toBe(201);
    return { worker: worker.roundTrips, objects: onRequestPaths(roundTrips) };
  }

  it("a pair that paid before, a hot sender and a hot recipient: none in the Worker, none in any object", async () => {
    const [a, b, c, r] = [await seedWalletUser(), await seedWalletUser(), await seedWalletUser(), await seedWalletUser()];
    for (const [from, to] of [
      [a, b],
      [a, c],
      [b, r],
      [c, r],
    ] as const)
      expect((await transfer(from.token, { recipientId: to.id, amount: 1 })).status).toBe(201);
    await settle();
    // Random pairs: a pair that paid before.
    expect(await counted(a, b)).toEqual({ worker: [], objects: [] });
    // A hot sender (a to several) and a hot recipient (several to r), concurrently.
    const worker = countingD1(env.DB);
    const { value, roundTrips } = await countingEverywhere(env.DB, () =>
      Promise.all(
        [
          [a, b],
          [a, c],
          [b, r],
          [c, r],
        ].map(([from, to]) =>
          call("POST", "/api/v1/messages/credit-transfer", {
            token: from!.token,
            body: { recipientId: to!.id, amount: 1 },
            vars: NO_RATE_LIMIT,
            bindings: { DB: worker.d1 },
          }),
        ),
      ),
    );
    expect(value.map((res) => res.status)).toEqual([201, 201, 201, 201]);
    expect({ worker: worker.roundTrips, objects: onRequestPaths(roundTrips) }).toEqual({ worker: [], objects: [] });
  });

  it("a first pair: none in the Worker nor in any object; the chat is listed behind the answer within 1 s", async () => {
    const [a, b] = [await seedWalletUser(), await seedWalletUser()];
    await settle();
    // The pair's chat is created by its object (its id derived from the pair), which takes the two
    // people's facts from their own objects' admissions; its directory row, membership index and
    // transfer mark follow from its outbox, behind the answer.
    expect(await counted(a, b)).toEqual({ worker: [], objects: [] });
    const chatId = await directChatIdOf(a.id, b.id);
    await vi.waitFor(
      async () => {
        const row = await env.DB.prepare("SELECT carries_transfers FROM chats WHERE id = ?").bind(chatId).first();
        const members = await env.DB.prepare("SELECT count(*) AS n FROM chat_members WHERE chat_id = ?").bind(chatId).first();
        expect({ row, members }).toEqual({ row: { carries_transfers: 1 }, members: { n: 2 } });
      },
      { timeout: 1_000, interval: 25 },
    );
  });

  it("a transfer refused by a block, a suspension or a missing recipient reads no D1 and leaves no ledger line", async () => {
    const [a, b, s] = [await seedWalletUser(), await seedWalletUser(), await seedWalletUser()];
    await setBlocked(b.id, a.id, true);
    await setSuspended(s.id, true);
    const entries = async () => [
      (await rowsOf(a.id, "SELECT COUNT(*) AS n FROM entries"))[0]!.n,
      (await rowsOf(b.id, "SELECT COUNT(*) AS n FROM entries"))[0]!.n,
    ];
    await settle();
    const before = await entries();
    for (const [from, to, code] of [
      [a, b.id, "recipient_blocked"],
      [s, a.id, "account_suspended"],
      [a, newId(), "user_not_found"],
    ] as const) {
      const worker = countingD1(env.DB);
      const { value, roundTrips } = await countingEverywhere(env.DB, () =>
        call("POST", "/api/v1/messages/credit-transfer", {
          token: from.token,
          body: { recipientId: to, amount: 1 },
          headers: { "Idempotency-Key": `refused-${code}` },
          bindings: { DB: worker.d1 },
        }),
      );
      expectError(value, code === "user_not_found" ? 404 : 403, code);
      expect({ worker: worker.roundTrips, objects: onRequestPaths(roundTrips) }).toEqual({ worker: [], objects: [] });
    }
    expect(await entries()).toEqual(before);
  });
});
