import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertError, assertOk, registerUser } from "./support/client.ts";

/** Two people open a direct chat and talk: what a chat client does, over HTTP. */
describe("chats and messages over HTTP", () => {
  it("a direct chat is created once (201), then found (200), and listed for both members", async () => {
    const alice = await registerUser("Alice Chat");
    const bob = await registerUser("Bob Chat");
    const created = await alice.client.POST("/api/v1/chats", { body: { type: "direct", memberId: bob.id } });
    const chat = assertOk(created, 201);
    assert.equal(chat.type, "direct");
    assert.deepEqual(chat.members.map((m) => m.userId).sort(), [alice.id, bob.id].sort());
    assert.equal(chat.lastSeq, 0);
    assert.equal(chat.lastMessage, null);

    const again = assertOk(await bob.client.POST("/api/v1/chats", { body: { type: "direct", memberId: alice.id } }), 200);
    assert.equal(again.id, chat.id);

    const list = assertOk(await bob.client.GET("/api/v1/chats", { params: { query: { limit: 10 } } }), 200);
    assert.ok(list.items.some((item) => item.id === chat.id));
    const one = assertOk(await bob.client.GET("/api/v1/chats/{chatId}", { params: { path: { chatId: chat.id } } }), 200);
    assert.equal(one.id, chat.id);
  });

  it("sends, pages newest-first with a cursor, catches up oldest-first with afterSeq, marks read", async () => {
    const alice = await registerUser("Alice Pager");
    const bob = await registerUser("Bob Pager");
    const chat = assertOk(await alice.client.POST("/api/v1/chats", { body: { type: "direct", memberId: bob.id } }), 201);

    const sent: { id: string; seq: number }[] = [];
    for (let i = 1; i <= 7; i++) {
      const message = assertOk(
        await alice.client.POST("/api/v2/messages", { body: { chatId: chat.id, content: `hello ${i}` } }),
        201,
      );
      assert.equal(message.type, "text");
      assert.equal(message.chatId, chat.id);
      assert.equal(message.senderId, alice.id);
      sent.push(message);
    }
    // v1 finds the same direct chat by recipient.
    const viaV1 = assertOk(
      await bob.client.POST("/api/v1/messages", { body: { recipientId: alice.id, content: "hi back" } }),
      201,
    );
    assert.equal(viaV1.chatId, chat.id);
    sent.push(viaV1);
    assert.deepEqual(
      sent.map((m) => m.seq),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );

    // A retried send with the same clientMessageId is the original, with 200.
    const first = assertOk(
      await alice.client.POST("/api/v2/messages", { body: { chatId: chat.id, content: "once", clientMessageId: "client-1" } }),
      201,
    );
    const retry = assertOk(
      await alice.client.POST("/api/v2/messages", { body: { chatId: chat.id, content: "once", clientMessageId: "client-1" } }),
      200,
    );
    assert.equal(retry.id, first.id);
    assert.equal(first.seq, 9);

    const seen: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = assertOk(
        await bob.client.GET("/api/v1/messages/chat/{chatId}", {
          params: { path: { chatId: chat.id }, query: { limit: 4, cursor } },
        }),
        200,
      );
      seen.push(...page.items.map((m) => m.seq));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor && pages < 10);
    assert.deepEqual(seen, [9, 8, 7, 6, 5, 4, 3, 2, 1], "newest first, every message once");
    assert.equal(pages, 3);

    const caughtUp = assertOk(
      await bob.client.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId: chat.id }, query: { afterSeq: 6 } } }),
      200,
    );
    assert.deepEqual(
      caughtUp.items.map((m) => m.seq),
      [7, 8, 9],
    );

    const bobsView = assertOk(await bob.client.GET("/api/v1/chats/{chatId}", { params: { path: { chatId: chat.id } } }), 200);
    assert.equal(bobsView.lastSeq, 9);
    assert.equal(bobsView.lastMessage?.id, first.id);
    // Bob's send of #8 moved his marker to 8: only Alice's #9 is unread.
    assert.equal(bobsView.unreadCount, 1);
    const read = assertOk(
      await bob.client.POST("/api/v1/chats/{chatId}/read", { params: { path: { chatId: chat.id } }, body: { seq: 9 } }),
      200,
    );
    assert.deepEqual(read, { chatId: chat.id, lastReadSeq: 9, unreadCount: 0 });
    assertError(
      await bob.client.POST("/api/v1/chats/{chatId}/read", { params: { path: { chatId: chat.id } }, body: { seq: 10 } }),
      400,
      "validation_failed",
    );
    assertError(
      await bob.client.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId: chat.id }, query: { limit: 101 } } }),
      400,
      "validation_failed",
    );
  });

  it("404 chat_not_found for a non-member, 400 for a malformed id", async () => {
    const alice = await registerUser("Alice Private");
    const bob = await registerUser("Bob Private");
    const eve = await registerUser("Eve Outsider");
    const chat = assertOk(await alice.client.POST("/api/v1/chats", { body: { type: "direct", memberId: bob.id } }), 201);
    assertError(await eve.client.GET("/api/v1/chats/{chatId}", { params: { path: { chatId: chat.id } } }), 404, "chat_not_found");
    assertError(
      await eve.client.POST("/api/v2/messages", { body: { chatId: chat.id, content: "let me in" } }),
      404,
      "chat_not_found",
    );
    assertError(
      await eve.client.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId: chat.id } } }),
      404,
      "chat_not_found",
    );
    assertError(
      await eve.client.GET("/api/v1/chats/{chatId}", { params: { path: { chatId: "not-an-id" } } }),
      400,
      "validation_failed",
    );
    assertError(
      await eve.client.POST("/api/v1/messages", { body: { recipientId: "64d15f9e2e6c8f4d5a000000", content: "anyone?" } }),
      404,
      "user_not_found",
    );
  });

  it("edit and delete: 403 for someone else's message, 409 message_immutable once deleted", async () => {
    const alice = await registerUser("Alice Editor");
    const bob = await registerUser("Bob Editor");
    const message = assertOk(
      await alice.client.POST("/api/v1/messages", { body: { recipientId: bob.id, content: "tpyo" } }),
      201,
    );
    const edited = assertOk(
      await alice.client.PATCH("/api/v1/messages/{messageId}", {
        params: { path: { messageId: message.id } },
        body: { content: "typo" },
      }),
      200,
    );
    assert.equal(edited.content, "typo");
    assert.ok(edited.editedAt);
    assertError(
      await bob.client.PATCH("/api/v1/messages/{messageId}", {
        params: { path: { messageId: message.id } },
        body: { content: "mine now" },
      }),
      403,
      "insufficient_permissions",
    );
    const deleted = assertOk(
      await alice.client.DELETE("/api/v1/messages/{messageId}", { params: { path: { messageId: message.id } } }),
      200,
    );
    assert.equal(deleted.content, null);
    assert.ok(deleted.deletedAt);
    assertError(
      await alice.client.PATCH("/api/v1/messages/{messageId}", {
        params: { path: { messageId: message.id } },
        body: { content: "again" },
      }),
      409,
      "message_immutable",
    );
  });

  it("403 recipient_blocked when the recipient has blocked the sender", async () => {
    const alice = await registerUser("Alice Blocked");
    const bob = await registerUser("Bob Blocker");
    assertOk(await bob.client.POST("/api/v1/users/{userId}/block", { params: { path: { userId: alice.id } } }), 200);
    assertError(
      await alice.client.POST("/api/v1/messages", { body: { recipientId: bob.id, content: "hello?" } }),
      403,
      "recipient_blocked",
    );
    assertOk(await bob.client.DELETE("/api/v1/users/{userId}/block", { params: { path: { userId: alice.id } } }), 200);
    assertOk(await alice.client.POST("/api/v1/messages", { body: { recipientId: bob.id, content: "hello!" } }), 201);
  });
});
