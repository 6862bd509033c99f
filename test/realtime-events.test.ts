import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RealtimeDO } from "../src/durable-objects/realtime/realtime-do";
import { realtimeFrameSchema } from "../src/schemas/realtime";
import { walletStub } from "../src/services/wallets";
import { call } from "./support/http";
import { closeSocketsAfterEach, type Frame, type TestSocket } from "./support/realtime";
import { seedUser } from "./support/users";
import { armFault, runRecovery, seedWalletUser, transfer } from "./support/wallets";

/**
 * The events the features publish, end to end: HTTP change → frames on real WebSockets of every
 * member (and nobody else). Each frame is checked against the documented RealtimeFrame schema.
 */

const { connect } = closeSocketsAfterEach();

function documented(frame: Frame) {
  expect(realtimeFrameSchema.safeParse(frame).error).toBeUndefined();
  expect(new Date(frame.at).toISOString()).toBe(frame.at);
  return frame;
}

async function expectFrame(socket: TestSocket, type: string, data: unknown) {
  const frame = documented(await socket.next());
  expect(frame).toEqual({ type, data, at: expect.any(String) });
  return frame;
}

/** The next `count` frames in arrival order (a transfer's frames for one person come in one call, in order). */
async function inOrder(socket: TestSocket, count: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  for (let i = 0; i < count; i += 1) frames.push(await socket.next());
  return frames;
}

/** `deliver` calls the user's RealtimeDO has served (its instance counter; the sockets keep it alive). */
function deliverCalls(userId: string): Promise<number> {
  return runInDurableObject(env.REALTIME.get(env.REALTIME.idFromName(userId)), (instance: RealtimeDO) => instance.deliverCalls);
}

async function ok(res: Awaited<ReturnType<typeof call>>, status = 200) {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status} ${res.text}`);
  return res.json.data;
}

describe("chat and message events", () => {
  it("a group message reaches every device of every member and nobody else; edit, delete and read follow", async () => {
    const owner = await seedUser();
    const ann = await seedUser();
    const ben = await seedUser();
    const outsider = await seedUser();
    const chat = await ok(
      await call("POST", "/api/v1/chats", {
        token: owner.token,
        body: { type: "group", title: "Trip", memberIds: [ann.id, ben.id] },
      }),
      201,
    );
    const ownerSocket = await connect(owner.token);
    const annPhone = await connect(ann.token);
    const annLaptop = await connect(ann.token);
    const benSocket = await connect(ben.token);
    const outsiderSocket = await connect(outsider.token);
    const members = [ownerSocket, annPhone, annLaptop, benSocket];

    const sent = await ok(
      await call("POST", "/api/v2/messages", {
        token: owner.token,
        body: { chatId: chat.id, content: "hello", clientMessageId: "c-1" },
      }),
      201,
    );
    for (const socket of members) await expectFrame(socket, "message.created", sent);

    // The same clientMessageId again answers the original (200) and pushes nothing new.
    await ok(
      await call("POST", "/api/v2/messages", {
        token: owner.token,
        body: { chatId: chat.id, content: "hello", clientMessageId: "c-1" },
      }),
    );

    const edited = await ok(
      await call("PATCH", `/api/v1/messages/${sent.id}`, { token: owner.token, body: { content: "hello!" } }),
    );
    for (const socket of members) await expectFrame(socket, "message.updated", edited);

    const read = await ok(await call("POST", `/api/v1/chats/${chat.id}/read`, { token: ann.token, body: { seq: sent.seq } }));
    for (const socket of members) {
      await expectFrame(socket, "chat.read", { chatId: chat.id, userId: ann.id, lastReadSeq: read.lastReadSeq });
    }

    const deleted = await ok(await call("DELETE", `/api/v1/messages/${sent.id}`, { token: owner.token }));
    expect(deleted.content).toBeNull();
    for (const socket of members) await expectFrame(socket, "message.deleted", deleted);

    for (const socket of members) await socket.expectSilence(100);
    await outsiderSocket.expectSilence(200);
  });

  it("joining and leaving post system messages to everybody concerned, the removed member included", async () => {
    const owner = await seedUser();
    const ann = await seedUser();
    const newcomer = await seedUser();
    const chat = await ok(
      await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "Club", memberIds: [ann.id] } }),
      201,
    );
    const ownerSocket = await connect(owner.token);
    const annSocket = await connect(ann.token);
    const newcomerSocket = await connect(newcomer.token);

    await ok(await call("POST", `/api/v1/chats/${chat.id}/members`, { token: owner.token, body: { userId: newcomer.id } }));
    const added = [];
    for (const socket of [ownerSocket, annSocket, newcomerSocket]) added.push(documented(await socket.next()));
    for (const frame of added)
      expect(frame).toMatchObject({ type: "message.created", data: { type: "system", chatId: chat.id } });
    expect(new Set(added.map((frame) => frame.data.id)).size).toBe(1);

    await ok(await call("DELETE", `/api/v1/chats/${chat.id}/members/${ann.id}`, { token: owner.token }));
    const removed = [];
    for (const socket of [ownerSocket, annSocket, newcomerSocket]) removed.push(documented(await socket.next()));
    for (const frame of removed) expect(frame).toMatchObject({ type: "message.created", data: { type: "system", seq: 2 } });

    // Ann is out: the next message reaches the others only.
    await ok(
      await call("POST", "/api/v2/messages", { token: newcomer.token, body: { chatId: chat.id, content: "hi all" } }),
      201,
    );
    for (const socket of [ownerSocket, newcomerSocket]) expect((await socket.next()).data.content).toBe("hi all");
    await annSocket.expectSilence();
  });

  it("a v1 direct message reaches both people", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const aliceSocket = await connect(alice.token);
    const bobSocket = await connect(bob.token);
    const sent = await ok(
      await call("POST", "/api/v1/messages", { token: alice.token, body: { recipientId: bob.id, content: "psst" } }),
      201,
    );
    await expectFrame(aliceSocket, "message.created", sent);
    await expectFrame(bobSocket, "message.created", sent);
  });

  it("a refused change pushes nothing", async () => {
    const owner = await seedUser();
    const ann = await seedUser();
    const chat = await ok(
      await call("POST", "/api/v1/chats", { token: owner.token, body: { type: "group", title: "Quiet", memberIds: [ann.id] } }),
      201,
    );
    const annSocket = await connect(ann.token);
    const ownerSocket = await connect(owner.token);
    const res = await call("POST", `/api/v1/chats/${chat.id}/read`, { token: ann.token, body: { seq: 99 } });
    expect(res.status).toBe(400);
    const notMine = await call("POST", "/api/v2/messages", {
      token: (await seedUser()).token,
      body: { chatId: chat.id, content: "x" },
    });
    expect(notMine.status).toBe(404);
    await annSocket.expectSilence();
    await ownerSocket.expectSilence(50);
  });
});

describe("wallet and transfer events", () => {
  it("a transfer pushes the new balances to both, the transfer to the recipient and the message to the chat", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const outsider = await seedUser();
    // Open both wallets first (welcome credits), so the transfer is the only balance change observed.
    await ok(await call("GET", "/api/v1/wallets/me", { token: alice.token }));
    const bobBefore = await ok(await call("GET", "/api/v1/wallets/me", { token: bob.token }));
    const aliceSocket = await connect(alice.token);
    const bobPhone = await connect(bob.token);
    const bobLaptop = await connect(bob.token);
    const outsiderSocket = await connect(outsider.token);

    const headers = { "Idempotency-Key": `rt-${alice.id}` };
    const body = { recipientId: bob.id, amount: 25, note: "lunch" };
    const transfer = await ok(await call("POST", "/api/v1/messages/credit-transfer", { token: alice.token, body, headers }), 201);
    const message = await ok(await call("GET", `/api/v1/messages/chat/${transfer.chatId}?afterSeq=0`, { token: bob.token }));
    const creditMessage = message.items.find((item: { id: string }) => item.id === transfer.messageId);
    expect(creditMessage.type).toBe("credit_transfer");

    const [aliceWallet, aliceMessage] = (await inOrder(aliceSocket, 2)).map(documented);
    expect(aliceWallet).toMatchObject({ type: "wallet.updated", data: { userId: alice.id, balance: transfer.senderBalance } });
    expect(aliceWallet.data.updatedAt).toBe(transfer.createdAt);
    expect(aliceMessage).toMatchObject({ type: "message.created", data: creditMessage });

    const bobWallets: Frame[] = [];
    for (const device of [bobPhone, bobLaptop]) {
      const [wallet, created, received] = (await inOrder(device, 3)).map(documented);
      bobWallets.push(wallet);
      expect(wallet).toMatchObject({ type: "wallet.updated", data: { userId: bob.id, balance: bobBefore.balance + 25 } });
      expect(wallet.data.balance).toBe(transfer.recipientBalance);
      expect(created).toMatchObject({ type: "message.created", data: creditMessage });
      expect(received).toEqual({ type: "transfer.received", data: transfer, at: expect.any(String) });
    }
    // The recipient's wallet as of the credit: nothing changed it since.
    const bobNow = await ok(await call("GET", "/api/v1/wallets/me", { token: bob.token }));
    for (const wallet of bobWallets) expect(wallet.data).toEqual(bobNow);

    // A replay with the same key moves nothing and pushes nothing.
    const replay = await call("POST", "/api/v1/messages/credit-transfer", { token: alice.token, body, headers });
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    for (const socket of [aliceSocket, bobPhone, bobLaptop]) await socket.expectSilence(100);
    await outsiderSocket.expectSilence(100);
  });

  it("a transfer costs one realtime call per person, carrying all of that person's frames in order", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const carol = await seedWalletUser();
    const aliceSocket = await connect(alice.token);
    const bobSocket = await connect(bob.token);
    const carolSocket = await connect(carol.token);
    const before = await Promise.all([alice, bob, carol].map((user) => deliverCalls(user.id)));

    const res = await transfer(alice.token, { recipientId: bob.id, amount: 30 });
    expect(res.status).toBe(201);
    const sent = res.json.data;
    const aliceFrames = (await inOrder(aliceSocket, 2)).map(documented);
    const bobFrames = (await inOrder(bobSocket, 3)).map(documented);
    await aliceSocket.expectSilence(100);
    await bobSocket.expectSilence(50);
    await carolSocket.expectSilence(50);

    expect(aliceFrames.map((frame) => frame.type)).toEqual(["wallet.updated", "message.created"]);
    expect(aliceFrames[0].data).toEqual({ userId: alice.id, balance: 70, updatedAt: sent.createdAt });
    expect(bobFrames.map((frame) => frame.type)).toEqual(["wallet.updated", "message.created", "transfer.received"]);
    expect(bobFrames[0].data).toMatchObject({ userId: bob.id, balance: 130 });
    expect(bobFrames[1].data).toEqual(aliceFrames[1].data);
    expect(bobFrames[1].data.id).toBe(sent.messageId);
    expect(bobFrames[2].data).toEqual(sent);
    // Frames of one call share their `at`.
    expect(new Set(bobFrames.map((frame) => frame.at)).size).toBe(1);

    const after = await Promise.all([alice, bob, carol].map((user) => deliverCalls(user.id)));
    expect(after.map((count, i) => count - before[i]!)).toEqual([1, 1, 0]);
  });

  it("a refused transfer pushes nothing", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    // Opened first: opening applies the welcome grant, itself a balance change that is pushed.
    await ok(await call("GET", "/api/v1/wallets/me", { token: alice.token }));
    const aliceSocket = await connect(alice.token);
    const bobSocket = await connect(bob.token);
    const res = await call("POST", "/api/v1/messages/credit-transfer", {
      token: alice.token,
      body: { recipientId: bob.id, amount: 100_000 },
    });
    expect(res.status).toBe(409);
    await aliceSocket.expectSilence();
    await bobSocket.expectSilence(50);
  });

  it("an admin grant pushes the new balance to the wallet's owner", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const socket = await connect(user.token);
    const grant = await ok(
      await call("POST", `/api/v1/admin/wallets/${user.id}/grants`, {
        token: admin.token,
        body: { amount: 500, reason: "thanks" },
      }),
      201,
    );
    const frame = documented(await socket.next());
    expect(frame).toMatchObject({ type: "wallet.updated", data: { userId: user.id, balance: grant.balance } });
    await socket.expectSilence(100);
  });

  it("a transfer finished by the recovery alarm is announced once, by whoever posts it", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const aliceSocket = await connect(alice.token);
    const bobSocket = await connect(bob.token);
    // Stop after the debit, the credit and the message, before the transfer is marked posted.
    await armFault(alice.id, "after_message");
    expect((await transfer(alice.token, { recipientId: bob.id, amount: 25 })).status).toBe(202);
    // The debit and the credit committed, but balance changes of a transfer go out with its
    // announcement: nothing until it is posted.
    await bobSocket.expectSilence(100);
    await aliceSocket.expectSilence(50);

    expect(await runRecovery(alice.id)).toBe(true);
    await runRecovery(alice.id);
    const [bobWallet, created, received] = (await inOrder(bobSocket, 3)).map(documented);
    expect(bobWallet).toMatchObject({ type: "wallet.updated", data: { userId: bob.id, balance: 125 } });
    expect(created).toMatchObject({ type: "message.created", data: { type: "credit_transfer", senderId: alice.id } });
    expect(received).toMatchObject({ type: "transfer.received", data: { senderId: alice.id, recipientBalance: 125 } });
    expect(received.data.messageId).toBe(created.data.id);
    const [aliceWallet, aliceMessage] = (await inOrder(aliceSocket, 2)).map(documented);
    expect(aliceWallet).toMatchObject({ type: "wallet.updated", data: { userId: alice.id, balance: 75 } });
    expect(aliceMessage).toEqual({ type: "message.created", data: created.data, at: expect.any(String) });
    await bobSocket.expectSilence(150);
    await aliceSocket.expectSilence(50);
  });
});
