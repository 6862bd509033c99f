import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { newId } from "../src/lib/ids";
import { recordAuditEntries } from "../src/services/audit";
import { withTriggers } from "./support/d1-triggers";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";
import { runRecovery } from "./support/wallets";

/** GET /api/v1/admin/audit (API.md): every grant, suspension, reinstatement and reconciliation start. */
const audit = (token: string, query = "") => call("GET", `/api/v1/admin/audit${query}`, { token });
const grant = (token: string, userId: string, body: unknown, key?: string) =>
  call("POST", `/api/v1/admin/wallets/${userId}/grants`, {
    token,
    body,
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

/** The entries of one admin, newest first, over every page. */
async function entriesOf(token: string, actorId: string, limit = 100) {
  const items: Record<string, unknown>[] = [];
  let cursor: string | null = null;
  do {
    const res = await audit(token, `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    expect(res.status, res.text).toBe(200);
    items.push(...res.json.data.items);
    cursor = res.json.data.nextCursor;
  } while (cursor);
  return items.filter((item) => item.actorId === actorId);
}

describe("the admin audit log", () => {
  it("an admin grant appears in GET /admin/audit, once even when its key is replayed", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const key = `audit-${crypto.randomUUID()}`;
    const first = await grant(admin.token, user.id, { amount: 250, reason: "Launch bonus" }, key);
    expect(first.status, first.text).toBe(201);
    const replay = await grant(admin.token, user.id, { amount: 250, reason: "Launch bonus" }, key);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    const entries = await entriesOf(admin.token, admin.id);
    expect(entries).toEqual([
      {
        id: first.json.data.grantId,
        actorId: admin.id,
        action: "grant",
        targetId: user.id,
        detail: { amount: 250, reason: "Launch bonus" },
        requestId: first.headers.get("X-Request-Id"),
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
    ]);
    // An unkeyed grant is an entry of its own; a refused one (unknown user) is none.
    expect((await grant(admin.token, user.id, { amount: 1, reason: "again" })).status).toBe(201);
    expect((await grant(admin.token, "64d15f9e2e6c8f4d5a000000", { amount: 1, reason: "nobody" })).status).toBe(404);
    expect((await entriesOf(admin.token, admin.id)).map((e) => e.detail)).toEqual([
      { amount: 1, reason: "again" },
      { amount: 250, reason: "Launch bonus" },
    ]);
  });

  it("the audit requestId is the server's own id, not the X-Request-Id the client sent", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const sent = { "X-Request-Id": "forged-request-id" };
    const granted = await call("POST", `/api/v1/admin/wallets/${user.id}/grants`, {
      token: admin.token,
      body: { amount: 3, reason: "forged id" },
      headers: sent,
    });
    expect(granted.status, granted.text).toBe(201);
    const suspended = await call("POST", `/api/v1/admin/users/${user.id}/suspension`, {
      token: admin.token,
      body: { reason: "forged id" },
      headers: sent,
    });
    expect(suspended.status, suspended.text).toBe(200);
    const entries = await entriesOf(admin.token, admin.id);
    expect(entries.map((e) => e.requestId)).toEqual([suspended.headers.get("X-Request-Id"), granted.headers.get("X-Request-Id")]);
    for (const entry of entries) expect(entry.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(entries.map((e) => e.requestId)).size).toBe(2);
  });

  it("a grant whose audit write fails is recorded by the user's object, which retries until D1 takes it", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const failing = {
      audit_refused: `BEFORE INSERT ON admin_audit WHEN NEW.target_id = '${user.id}' BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`,
    };
    const [keyed, unkeyed] = await withTriggers(failing, async () => {
      const keyed = await grant(admin.token, user.id, { amount: 7, reason: "keyed" }, `outbox-${crypto.randomUUID()}`);
      const unkeyed = await grant(admin.token, user.id, { amount: 8, reason: "unkeyed" });
      // The grants happened (201): their rows wait in the user's object, and a retry fails again.
      expect([keyed.status, unkeyed.status]).toEqual([201, 201]);
      expect(await runRecovery(user.id, 60_000)).toBe(true);
      expect(await entriesOf(admin.token, admin.id)).toEqual([]);
      return [keyed, unkeyed];
    });
    // Once D1 takes writes again, the alarm delivers them (no maximum number of attempts), once each.
    expect(await runRecovery(user.id, 600_000)).toBe(true);
    expect(await runRecovery(user.id, 600_000)).toBe(true);
    const entries = await entriesOf(admin.token, admin.id);
    expect(entries.map((e) => [e.id, e.detail])).toEqual([
      [unkeyed.json.data.grantId, { amount: 8, reason: "unkeyed" }],
      [keyed.json.data.grantId, { amount: 7, reason: "keyed" }],
    ]);
    expect(entries.map((e) => e.requestId)).toEqual([unkeyed.headers.get("X-Request-Id"), keyed.headers.get("X-Request-Id")]);
  });

  it("suspensions, reinstatements and reconciliation starts are recorded, newest first, paged", async () => {
    const admin = await seedUser({ role: "admin" });
    const user = await seedUser();
    const path = `/api/v1/admin/users/${user.id}/suspension`;
    expect((await call("POST", path, { token: admin.token, body: { reason: "spam" } })).status).toBe(200);
    expect((await call("DELETE", path, { token: admin.token, body: { reason: "appeal accepted" } })).status).toBe(200);
    expect((await call("DELETE", path, { token: admin.token })).status).toBe(200);
    const started = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    expect([200, 202]).toContain(started.status);
    const entries = await entriesOf(admin.token, admin.id, 1);
    const expected = [
      { action: "reinstatement", targetId: user.id, detail: { reason: null } },
      { action: "reinstatement", targetId: user.id, detail: { reason: "appeal accepted" } },
      { action: "suspension", targetId: user.id, detail: { reason: "spam" } },
    ];
    // Only a run this request started is a start (another test's run may be running).
    if (started.status === 202) {
      expected.unshift({
        action: "reconciliation_start",
        targetId: started.json.data.id,
        detail: { trigger: "manual" },
      } as never);
    }
    expect(entries).toEqual(expected.map((entry) => expect.objectContaining(entry)));
  });

  it("admins only; limit and cursor are validated", async () => {
    const user = await seedUser();
    const admin = await seedUser({ role: "admin" });
    expectError(await audit(user.token), 403, "insufficient_permissions");
    expectError(await call("GET", "/api/v1/admin/audit"), 401, "authentication_required");
    expectError(await audit(admin.token, "?limit=0"), 400, "validation_failed");
    expectError(await audit(admin.token, "?limit=101"), 400, "validation_failed");
    expectError(await audit(admin.token, "?cursor=not-a-cursor"), 400, "validation_failed");
  });
});

describe("delivering audit rows to D1", () => {
  it("takes a backlog larger than one statement's bound parameters (D1 binds at most 100) in one call", async () => {
    const admin = await seedUser({ role: "admin" });
    const target = await seedUser();
    const now = Date.now();
    const entries = Array.from({ length: 40 }, (_, i) => ({
      id: newId(now + i),
      actorId: admin.id,
      targetId: target.id,
      requestId: newId(now + i),
      createdAt: now + i,
      action: "grant" as const,
      detail: { amount: i + 1, reason: "backlog" },
    }));
    await recordAuditEntries(createDb(env.DB), entries);
    await recordAuditEntries(createDb(env.DB), entries);
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM admin_audit WHERE target_id = ?").bind(target.id).first();
    expect(rows).toEqual({ n: 40 });
  });
});
