import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../src/lib/ids";
import { authRouter } from "../src/routes/auth/auth.index";
import { usersRouter } from "../src/routes/users/users.index";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";

/** A v1 message: opens the pair's chat when it has none (the owners' checks), else sends into it (the chat's copies of the facts). */
const message = (from: { token: string }, to: { id: string }) =>
  call("POST", "/api/v1/messages", { token: from.token, body: { recipientId: to.id, content: "hi" } });

describe("profiles", () => {
  it("email only for yourself and for admins", async () => {
    const alice = await seedUser({ displayName: "Alice" });
    const bob = await seedUser({ displayName: "Bob" });
    const admin = await seedUser({ role: "admin" });

    const mine = await call("GET", "/api/v1/users/me", { token: alice.token });
    expect(mine.status).toBe(200);
    expect(mine.json.data).toEqual({
      id: alice.id,
      displayName: "Alice",
      role: "user",
      status: "active",
      createdAt: expect.stringMatching(/Z$/),
      email: alice.email,
    });

    const self = await call("GET", `/api/v1/users/${alice.id}`, { token: alice.token });
    expect(self.json.data.email).toBe(alice.email);

    const seenByBob = await call("GET", `/api/v1/users/${alice.id}`, { token: bob.token });
    expect(seenByBob.status).toBe(200);
    expect(seenByBob.json.data).toEqual({
      id: alice.id,
      displayName: "Alice",
      role: "user",
      status: "active",
      createdAt: mine.json.data.createdAt,
    });
    expect(seenByBob.text).not.toContain(alice.email);

    const seenByAdmin = await call("GET", `/api/v1/users/${alice.id}`, { token: admin.token });
    expect(seenByAdmin.json.data.email).toBe(alice.email);
  });

  it("unknown user 404 user_not_found; a malformed id 400; no token 401", async () => {
    const viewer = await seedUser();
    expectError(await call("GET", `/api/v1/users/${newId()}`, { token: viewer.token }), 404, "user_not_found");
    const bad = expectError(await call("GET", "/api/v1/users/not-an-id", { token: viewer.token }), 400, "validation_failed");
    expect(bad.errors[1]).toBe("userId: must be a 24-character lowercase hex id");
    expectError(await call("GET", `/api/v1/users/${viewer.id}`), 401, "authentication_required");
  });
});

describe("search", () => {
  it("prefix on display name (case-insensitive) or exact email, paged by cursor", async () => {
    const tag = `Zq${crypto.randomUUID().slice(0, 8)}`;
    const names = [`${tag} Carol`, `${tag} anna`, `${tag} Bea`, `${tag} Anna`, `${tag.toUpperCase()} dave`];
    const seeded = [];
    for (const displayName of names) seeded.push(await seedUser({ displayName }));
    await seedUser({ displayName: `x${tag} not a prefix match` });
    const viewer = await seedUser();

    const seen: string[] = [];
    let cursor: string | null = null;
    const pageSizes: number[] = [];
    do {
      const query: string = `search=${encodeURIComponent(tag.toLowerCase())}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const res = await call("GET", `/api/v1/users?${query}`, { token: viewer.token });
      expect(res.status, res.text).toBe(200);
      pageSizes.push(res.json.data.items.length);
      for (const item of res.json.data.items) {
        expect(item.email).toBeUndefined();
        seen.push(item.displayName);
      }
      cursor = res.json.data.nextCursor;
    } while (cursor);
    expect(pageSizes).toEqual([2, 2, 1]);
    expect(seen).toHaveLength(5);
    expect(new Set(seen)).toEqual(new Set(names));
    // Ordered by the case-folded name.
    const keys = seen.map((name) => name.toLowerCase());
    expect(keys).toEqual([...keys].sort());

    const byEmail = await call("GET", `/api/v1/users?search=${encodeURIComponent(seeded[2]?.email.toUpperCase() ?? "")}`, {
      token: viewer.token,
    });
    expect(byEmail.json.data.items.map((u: { id: string }) => u.id)).toEqual([seeded[2]?.id]);
    // Only the exact email matches, not a part of it.
    const partial = await call("GET", `/api/v1/users?search=${encodeURIComponent(seeded[2]?.email.slice(0, 12) ?? "")}`, {
      token: viewer.token,
    });
    expect(partial.json.data.items).toEqual([]);

    const admin = await seedUser({ role: "admin" });
    const asAdmin = await call("GET", `/api/v1/users?search=${tag}`, { token: admin.token });
    expect(asAdmin.json.data.items).toHaveLength(5);
    expect(asAdmin.json.data.items.every((u: { email?: string }) => typeof u.email === "string")).toBe(true);
    expect(asAdmin.json.data.nextCursor).toBeNull();
  });

  it("without search: everyone, paged; bad limit or cursor is 400", async () => {
    const viewer = await seedUser();
    const res = await call("GET", "/api/v1/users?limit=1", { token: viewer.token });
    expect(res.status).toBe(200);
    expect(res.json.data.items).toHaveLength(1);
    expect(typeof res.json.data.nextCursor).toBe("string");
    expectError(await call("GET", "/api/v1/users?limit=0", { token: viewer.token }), 400, "validation_failed");
    expectError(await call("GET", "/api/v1/users?limit=101", { token: viewer.token }), 400, "validation_failed");
    const tampered = expectError(
      await call("GET", "/api/v1/users?cursor=garbage", { token: viewer.token }),
      400,
      "validation_failed",
    );
    expect(tampered.errors[1]).toBe("cursor: is not a cursor returned by this list");
    expectError(await call("GET", "/api/v1/users"), 401, "authentication_required");
  });
});

describe("blocking", () => {
  it("block and unblock: idempotent 200s that gate who can reach whom", async () => {
    const alice = await seedUser();
    const bob = await seedUser();
    const block = await call("POST", `/api/v1/users/${bob.id}/block`, { token: alice.token });
    expect(block.status).toBe(200);
    expect(block.json.data).toEqual({ userId: bob.id, blocked: true });
    expect((await call("POST", `/api/v1/users/${bob.id}/block`, { token: alice.token })).status).toBe(200);

    expectError(await message(bob, alice), 403, "recipient_blocked");
    expect((await message(alice, bob)).status).toBe(201);

    // Bob blocks back: now neither can reach the other.
    expect((await call("POST", `/api/v1/users/${alice.id}/block`, { token: bob.token })).status).toBe(200);
    expectError(await message(alice, bob), 403, "recipient_blocked");

    const unblock = await call("DELETE", `/api/v1/users/${bob.id}/block`, { token: alice.token });
    expect(unblock.status).toBe(200);
    expect(unblock.json.data).toEqual({ userId: bob.id, blocked: false });
    expect((await call("DELETE", `/api/v1/users/${bob.id}/block`, { token: alice.token })).status).toBe(200);
    expect((await message(bob, alice)).status).toBe(201);
    expectError(await message(alice, bob), 403, "recipient_blocked");
  });

  it("yourself is 400, an unknown user 404 user_not_found, a bad id 400, no token 401", async () => {
    const alice = await seedUser();
    const self = expectError(
      await call("POST", `/api/v1/users/${alice.id}/block`, { token: alice.token }),
      400,
      "validation_failed",
    );
    expect(self.errors[1]).toBe("userId: you cannot block yourself");
    expectError(await call("DELETE", `/api/v1/users/${alice.id}/block`, { token: alice.token }), 400, "validation_failed");
    expectError(await call("POST", `/api/v1/users/${newId()}/block`, { token: alice.token }), 404, "user_not_found");
    expectError(await call("DELETE", `/api/v1/users/${newId()}/block`, { token: alice.token }), 404, "user_not_found");
    expectError(await call("POST", "/api/v1/users/xyz/block", { token: alice.token }), 400, "validation_failed");
    expectError(await call("POST", `/api/v1/users/${alice.id}/block`), 401, "authentication_required");
  });
});

describe("blocking and suspension as the other features see them (over HTTP)", () => {
  it("a blocked user cannot open a direct chat with, message or pay the blocker", async () => {
    const blocker = await seedUser();
    const blocked = await seedUser();
    expect((await call("POST", `/api/v1/users/${blocked.id}/block`, { token: blocker.token })).status).toBe(200);
    const sends = [
      call("POST", "/api/v1/chats", { token: blocked.token, body: { type: "direct", memberId: blocker.id } }),
      call("POST", "/api/v1/messages", { token: blocked.token, body: { recipientId: blocker.id, content: "hi" } }),
      call("POST", "/api/v1/messages/credit-transfer", { token: blocked.token, body: { recipientId: blocker.id, amount: 1 } }),
    ];
    for (const res of await Promise.all(sends)) expectError(res, 403, "recipient_blocked");
    // One-way: the blocker can still write to the person they blocked.
    expect(
      (await call("POST", "/api/v1/messages", { token: blocker.token, body: { recipientId: blocked.id, content: "hi" } })).status,
    ).toBe(201);
  });

  it("a suspended user can read but every send is 403 account_suspended", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const friend = await seedUser();
    await call("POST", `/api/v1/admin/users/${user.id}/suspension`, { token: admin.token, body: { reason: "abuse" } });
    expectError(
      await call("POST", "/api/v1/messages", { token: user.token, body: { recipientId: friend.id, content: "hi" } }),
      403,
      "account_suspended",
    );
    expectError(
      await call("POST", "/api/v1/messages/credit-transfer", { token: user.token, body: { recipientId: friend.id, amount: 1 } }),
      403,
      "account_suspended",
    );
    expect((await call("GET", "/api/v1/chats", { token: user.token })).status).toBe(200);
    await call("DELETE", `/api/v1/admin/users/${user.id}/suspension`, { token: admin.token });
    expect(
      (await call("POST", "/api/v1/messages", { token: user.token, body: { recipientId: friend.id, content: "hi" } })).status,
    ).toBe(201);
  });
});

describe("suspension", () => {
  it("admins suspend and reinstate; sends are refused meanwhile; reads still work", async () => {
    const admin = await seedUser({ role: "admin" });
    const target = await seedUser();
    const other = await seedUser();

    const res = await call("POST", `/api/v1/admin/users/${target.id}/suspension`, {
      token: admin.token,
      body: { reason: "  spam  " },
    });
    expect(res.status).toBe(200);
    expect(res.json.data).toMatchObject({ id: target.id, status: "suspended", email: target.email });
    const row = await env.DB.prepare("SELECT suspended_reason FROM users WHERE id = ?")
      .bind(target.id)
      .first<{ suspended_reason: string }>();
    expect(row?.suspended_reason).toBe("spam");
    // Idempotent.
    expect(
      (await call("POST", `/api/v1/admin/users/${target.id}/suspension`, { token: admin.token, body: { reason: "again" } }))
        .status,
    ).toBe(200);

    expectError(await message(target, other), 403, "account_suspended");
    const me = await call("GET", "/api/v1/users/me", { token: target.token });
    expect(me.status).toBe(200);
    expect(me.json.data.status).toBe("suspended");

    // DELETE works with no body at all, and with one.
    const lifted = await call("DELETE", `/api/v1/admin/users/${target.id}/suspension`, { token: admin.token });
    expect(lifted.status, lifted.text).toBe(200);
    expect(lifted.json.data.status).toBe("active");
    expect(
      (
        await call("DELETE", `/api/v1/admin/users/${target.id}/suspension`, {
          token: admin.token,
          body: { reason: "appeal accepted" },
        })
      ).status,
    ).toBe(200);
    expect((await message(target, other)).status).toBe(201);
  });

  it("non-admins get 403; unknown user 404; a missing reason 400; admins cannot suspend themselves", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const target = await seedUser();
    const path = `/api/v1/admin/users/${target.id}/suspension`;
    expectError(await call("POST", path, { token: user.token, body: { reason: "nope" } }), 403, "insufficient_permissions");
    expectError(await call("DELETE", path, { token: user.token }), 403, "insufficient_permissions");
    expectError(await call("POST", path, { body: { reason: "nope" } }), 401, "authentication_required");
    expect((await message(target, user)).status).toBe(201);

    expectError(
      await call("POST", `/api/v1/admin/users/${newId()}/suspension`, { token: admin.token, body: { reason: "x" } }),
      404,
      "user_not_found",
    );
    expectError(await call("DELETE", `/api/v1/admin/users/${newId()}/suspension`, { token: admin.token }), 404, "user_not_found");
    expect(expectError(await call("POST", path, { token: admin.token, body: {} }), 400, "validation_failed").errors).toEqual([
      "Validation failed",
      "reason: is required",
    ]);
    expect(
      expectError(await call("POST", path, { token: admin.token, body: { reason: "  " } }), 400, "validation_failed").errors,
    ).toEqual(["Validation failed", "reason: must not be blank"]);
    expectError(
      await call("POST", `/api/v1/admin/users/${admin.id}/suspension`, { token: admin.token, body: { reason: "oops" } }),
      400,
      "validation_failed",
    );
  });
});

describe("OpenAPI", () => {
  it("documents every identity route with its error statuses", async () => {
    // Built from the identity routers alone, so another feature's document problems cannot mask these.
    const info = { openapi: "3.1.0", info: { title: "identity", version: "0" } };
    const authDoc = authRouter.getOpenAPI31Document(info);
    const usersDoc = usersRouter.getOpenAPI31Document(info);
    const doc = {
      paths: { ...authDoc.paths, ...usersDoc.paths } as Record<string, any>,
      components: { ...usersDoc.components } as any,
    };
    const expected: [string, string, string[]][] = [
      ["/api/v1/auth/register", "post", ["201", "400", "409", "413", "415", "429", "500"]],
      ["/api/v1/auth/login", "post", ["200", "400", "401", "429"]],
      ["/api/v1/auth/refresh", "post", ["200", "400", "401", "429"]],
      ["/api/v1/auth/logout", "post", ["200", "400", "401"]],
      ["/api/v1/users/me", "get", ["200", "401"]],
      ["/api/v1/users/{userId}", "get", ["200", "400", "401", "404"]],
      ["/api/v1/users", "get", ["200", "400", "401"]],
      ["/api/v1/users/{userId}/block", "post", ["200", "400", "401", "404"]],
      ["/api/v1/users/{userId}/block", "delete", ["200", "400", "401", "404"]],
      ["/api/v1/admin/users/{userId}/suspension", "post", ["200", "400", "401", "403", "404"]],
      ["/api/v1/admin/users/{userId}/suspension", "delete", ["200", "401", "403", "404"]],
    ];
    for (const [path, method, statuses] of expected) {
      const operation = doc.paths[path]?.[method];
      expect(operation, `${method} ${path}`).toBeDefined();
      for (const status of statuses) expect(operation.responses[status], `${method} ${path} ${status}`).toBeDefined();
    }
    // login answers 401 without being an authenticated route.
    expect(doc.paths["/api/v1/auth/login"].post.security).toEqual([]);
    expect(doc.components.schemas.User.properties.email).toBeDefined();
    expect(doc.paths["/api/v1/auth/register"].post.description).toMatch(/^\*\*Production uyarisi:\*\*/);
    expect(authDoc.components?.schemas?.Session).toBeDefined();
  });
});
