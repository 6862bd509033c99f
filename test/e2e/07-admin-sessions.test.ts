import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { request } from "node:http";
import path from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { admin, assertError, assertOk, BASE_URL, registerUser } from "./support/client.ts";

/**
 * Issue 23 over HTTP: an admin made out of band by the operator command, the admin check asked of
 * the caller's object (a suspended admin, one's own suspension), the audit log, ended sessions
 * refused where credits move, and forged realtime tickets.
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const PORT = new URL(BASE_URL).port;

/**
 * `npm run admin -- <show|grant> --env local --user-id … --port …` against the running server: the
 * command starts its Workflow there, which asks the user's object (the role's owner).
 */
async function operator(action: "show" | "grant", userId: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["scripts/admin.ts", action, "--env", "local", "--user-id", userId, "--port", PORT],
    { cwd: ROOT },
  );
  return stdout;
}

/** The operator checks who holds the id, then promotes it (README, "Making admins"). */
async function makeAdmin(user: { id: string; email: string }) {
  assert.match(await operator("show", user.id), new RegExp(`${user.id}: email=${user.email} .*role=user`));
  assert.match(await operator("grant", user.id), /role=admin/);
}

/** A WebSocket upgrade request answered without an upgrade: its status and JSON body. */
function refusedUpgrade(ticket: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const url = new URL(`/api/v1/realtime?ticket=${encodeURIComponent(ticket)}`, BASE_URL);
    const req = request(url, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": Buffer.from(randomUUID().slice(0, 16)).toString("base64"),
      },
    });
    req.on("upgrade", (_res, socket) => {
      socket.destroy();
      reject(new Error("the forged ticket opened a socket"));
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(body) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("admins, the audit log and ended sessions over HTTP", () => {
  it("an admin made with npm run admin grants; the grant is in GET /admin/audit once; suspended, it is refused and cannot lift its own suspension", async () => {
    const boss = await admin();
    const second = await registerUser("Second Admin");
    const payee = await registerUser("Payee");
    assertError(await second.client.GET("/api/v1/admin/audit", { params: { query: {} } }), 403, "insufficient_permissions");
    await makeAdmin(second);
    // A promotion by id writes its audit row: the operator's, naming the account.
    const promotions = assertOk(await boss.GET("/api/v1/admin/audit", { params: { query: { limit: 100 } } }), 200);
    const promotion = promotions.items.find((entry) => entry.action === "role_grant" && entry.targetId === second.id);
    assert.ok(promotion, "no role_grant entry for the promotion");
    assert.equal(promotion.actorId, "operator");
    assert.equal(promotion.detail.role, "admin");
    assert.equal(promotion.detail.previousRole, "user");
    // As an admin it sees other users' emails ...
    const seen = assertOk(await second.client.GET("/api/v1/users/{userId}", { params: { path: { userId: payee.id } } }), 200);
    assert.equal(seen.email, payee.email);

    // The same access token: the role is read from the database on every admin request.
    const key = randomUUID();
    const grant = () =>
      second.client.POST("/api/v1/admin/wallets/{userId}/grants", {
        params: { path: { userId: payee.id } },
        body: { amount: 40, reason: "Welcome aboard" },
        headers: { "Idempotency-Key": key },
      });
    const first = await grant();
    const granted = assertOk(first, 201);
    const replay = await grant();
    assert.equal(replay.response.headers.get("Idempotent-Replayed"), "true");

    const page = assertOk(await boss.GET("/api/v1/admin/audit", { params: { query: { limit: 100 } } }), 200);
    const mine = page.items.filter((entry) => entry.actorId === second.id);
    assert.deepEqual(
      mine.map(({ id, action, targetId, detail, requestId }) => ({ id, action, targetId, detail, requestId })),
      [
        {
          id: granted.grantId,
          action: "grant",
          targetId: payee.id,
          detail: { amount: 40, reason: "Welcome aboard" },
          requestId: first.response.headers.get("X-Request-Id"),
        },
      ],
    );

    assertOk(
      await boss.POST("/api/v1/admin/users/{userId}/suspension", {
        params: { path: { userId: second.id } },
        body: { reason: "Granted without a ticket" },
      }),
      200,
    );
    assertError(await second.client.GET("/api/v1/admin/audit", { params: { query: {} } }), 403, "account_suspended");
    // ... and a suspended admin sees no emails, whatever its token says.
    const hidden = assertOk(await second.client.GET("/api/v1/users/{userId}", { params: { path: { userId: payee.id } } }), 200);
    assert.equal(hidden.email, undefined);
    // A stored outcome answers its key first (API.md §1): the lost-201 retry still learns the grant happened.
    const afterSuspension = await grant();
    assert.equal(afterSuspension.response.status, 201);
    assert.equal(afterSuspension.response.headers.get("Idempotent-Replayed"), "true");
    assertError(
      await second.client.POST("/api/v1/admin/wallets/{userId}/grants", {
        params: { path: { userId: payee.id } },
        body: { amount: 40, reason: "Welcome aboard" },
        headers: { "Idempotency-Key": randomUUID() },
      }),
      403,
      "account_suspended",
    );
    assertError(
      await second.client.DELETE("/api/v1/admin/users/{userId}/suspension", { params: { path: { userId: second.id } } }),
      403,
      "insufficient_permissions",
    );
    const after = assertOk(await boss.GET("/api/v1/admin/audit", { params: { query: { limit: 2 } } }), 200);
    assert.deepEqual(
      after.items.map(({ action, targetId }) => ({ action, targetId })),
      [
        { action: "suspension", targetId: second.id },
        { action: "grant", targetId: payee.id },
      ],
    );
  });

  it("after logout-all the old access token's transfer is 401 session_ended, while GET /users/me still answers 200", async () => {
    const sender = await registerUser("Ended Sender");
    const recipient = await registerUser("Ended Recipient");
    assertOk(await sender.client.POST("/api/v1/auth/logout-all"), 200);
    assertError(
      await sender.client.POST("/api/v1/messages/credit-transfer", { body: { recipientId: recipient.id, amount: 5 } }),
      401,
      "session_ended",
    );
    assertError(await sender.client.POST("/api/v1/realtime/tickets"), 401, "session_ended");
    assert.equal(assertOk(await sender.client.GET("/api/v1/users/me"), 200).id, sender.id);
    assert.equal(assertOk(await sender.client.GET("/api/v1/wallets/me"), 200).balance, 100);
  });

  it("a forged realtime ticket is 401 invalid_token, and no socket opens", async () => {
    const victim = await registerUser("Forged Victim");
    const someone = await registerUser("Ticket Holder");
    const [, expiresAt, nonce, mac] = assertOk(await someone.client.POST("/api/v1/realtime/tickets"), 201).ticket.split(".");
    assertError(await refusedUpgrade(`${victim.id}.${"A".repeat(43)}`), 401, "invalid_token");
    // Someone's genuine ticket pointed at the victim: its signature no longer holds, which the Worker checks itself.
    const retargeted = assertError(await refusedUpgrade(`${victim.id}.${expiresAt}.${nonce}.${mac}`), 401, "invalid_token");
    assert.match(retargeted.errors?.[1] ?? "", /not one this server issued/);
  });
});
