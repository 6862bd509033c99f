import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { admin, api, assertError, assertOk, assertPosted, BASE_URL, registerUser } from "./support/client.ts";

type Frame = { type: string; data?: Record<string, unknown>; at?: string };

/** Opens the realtime socket with a fresh ticket and collects its frames. */
async function connect(client: ReturnType<typeof api>) {
  const { ticket } = assertOk(await client.POST("/api/v1/realtime/tickets"), 201);
  const socket = new WebSocket(`${BASE_URL.replace(/^http/, "ws")}/api/v1/realtime?ticket=${encodeURIComponent(ticket)}`);
  const frames: Frame[] = [];
  const waiters: { test: (frame: Frame) => boolean; resolve: (frame: Frame) => void }[] = [];
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(String(event.data)) as Frame;
    frames.push(frame);
    for (const waiter of waiters.splice(0)) {
      if (waiter.test(frame)) waiter.resolve(frame);
      else waiters.push(waiter);
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error("WebSocket did not open")), { once: true });
  });
  const next = (test: (frame: Frame) => boolean, ms = 5_000) =>
    new Promise<Frame>((resolve, reject) => {
      const found = frames.find(test);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`no such frame within ${ms} ms; got ${JSON.stringify(frames)}`)), ms);
      waiters.push({
        test,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      });
    });
  return { socket, ticket, frames, next };
}

describe("group chats and realtime over HTTP", () => {
  it("a group owner adds and removes members; a member cannot; a member may leave", async () => {
    const owner = await registerUser("Owner");
    const member = await registerUser("Member");
    const late = await registerUser("Latecomer");
    const group = assertOk(
      await owner.client.POST("/api/v1/chats", { body: { type: "group", title: "Trip", memberIds: [member.id] } }),
      201,
    );
    assert.equal(group.type, "group");
    assert.equal(group.title, "Trip");
    assertError(
      await member.client.POST("/api/v1/chats/{chatId}/members", {
        params: { path: { chatId: group.id } },
        body: { userId: late.id },
      }),
      403,
      "insufficient_permissions",
    );
    const grown = assertOk(
      await owner.client.POST("/api/v1/chats/{chatId}/members", {
        params: { path: { chatId: group.id } },
        body: { userId: late.id },
      }),
      200,
    );
    assert.ok(grown.members.some((m) => m.userId === late.id));
    assertOk(
      await late.client.DELETE("/api/v1/chats/{chatId}/members/{userId}", {
        params: { path: { chatId: group.id, userId: late.id } },
      }),
      200,
    );
    assertError(
      await late.client.GET("/api/v1/chats/{chatId}", { params: { path: { chatId: group.id } } }),
      404,
      "chat_not_found",
    );
  });

  it("an admin lifts a suspension and the user can send again", async () => {
    const adminClient = await admin();
    const user = await registerUser("Suspended Once");
    const friend = await registerUser("Friend");
    const suspended = assertOk(
      await adminClient.POST("/api/v1/admin/users/{userId}/suspension", {
        params: { path: { userId: user.id } },
        body: { reason: "e2e" },
      }),
      200,
    );
    assert.equal(suspended.status, "suspended");
    assertError(
      await user.client.POST("/api/v1/messages", { body: { recipientId: friend.id, content: "hi" } }),
      403,
      "account_suspended",
    );
    const lifted = assertOk(
      await adminClient.DELETE("/api/v1/admin/users/{userId}/suspension", { params: { path: { userId: user.id } } }),
      200,
    );
    assert.equal(lifted.status, "active");
    assertOk(await user.client.POST("/api/v1/messages", { body: { recipientId: friend.id, content: "hi" } }), 201);
  });

  it("realtime: a ticket opens the socket once; frames arrive for messages and transfers; ping is answered", async () => {
    const alice = await registerUser("Alice Live");
    const bob = await registerUser("Bob Live");
    // Without an upgrade header: 426, and the ticket is not consumed.
    const { ticket } = assertOk(await bob.client.POST("/api/v1/realtime/tickets"), 201);
    assertError(await api().GET("/api/v1/realtime", { params: { query: { ticket } } }), 426, "upgrade_required");

    const live = await connect(bob.client);
    try {
      live.socket.send(JSON.stringify({ type: "ping" }));
      await live.next((frame) => frame.type === "pong");

      const sent = assertOk(
        await alice.client.POST("/api/v1/messages", { body: { recipientId: bob.id, content: "are you there?" } }),
        201,
      );
      const created = await live.next((frame) => frame.type === "message.created" && frame.data?.id === sent.id);
      assert.equal(created.data?.content, "are you there?");

      const transfer = assertPosted(
        await alice.client.POST("/api/v1/messages/credit-transfer", { body: { recipientId: bob.id, amount: 5 } }),
      );
      const received = await live.next(
        (frame) => frame.type === "transfer.received" && frame.data?.transferId === transfer.transferId,
      );
      assert.equal(received.data?.transferredAmount, 5);
      const wallet = await live.next((frame) => frame.type === "wallet.updated" && frame.data?.balance === 105);
      assert.equal(wallet.data?.userId, bob.id);
    } finally {
      live.socket.close();
    }
    // The ticket was used by the first upgrade: presenting it again is refused, no socket opens.
    const again = new WebSocket(`${BASE_URL.replace(/^http/, "ws")}/api/v1/realtime?ticket=${encodeURIComponent(live.ticket)}`);
    const outcome = await new Promise<string>((resolve) => {
      again.addEventListener("open", () => resolve("open"), { once: true });
      again.addEventListener("error", () => resolve("refused"), { once: true });
    });
    again.close();
    assert.equal(outcome, "refused");
  });
});
