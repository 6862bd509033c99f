import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call } from "../support/http";
import { seedUser } from "../support/users";
import { seedWalletUser } from "../support/wallets";
import { sent } from "./support";

describe("GET /api/v1/admin/reconciliation", () => {
  it("with no recent run starts one and answers its report; then answers that report until it is 24 h old", async () => {
    const admin = await seedUser({ role: "admin" });
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    await sent(alice, bob, 10);
    const first = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    expect(first.status).toBe(200);
    expect(Object.keys(first.json.data).sort()).toEqual(
      [
        "checkedAt",
        "discrepancies",
        "discrepancyCount",
        "inFlightAmount",
        "pendingTransfers",
        "runId",
        "stuckTransfers",
        "totalBalance",
        "totalGranted",
        "wallets",
      ].sort(),
    );
    expect(first.json.data).toMatchObject({ totalBalance: 200, totalGranted: 200, pendingTransfers: 0, discrepancies: [] });
    const again = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    expect(again.json.data.runId).toBe(first.json.data.runId);
    const run = (await call("GET", `/api/v1/admin/reconciliations/${first.json.data.runId}`, { token: admin.token })).json.data;
    expect(run).toMatchObject({ status: "completed", trigger: "auto" });

    await env.DB.prepare("UPDATE reconciliation_runs SET started_at = started_at - 25 * 3600 * 1000").run();
    const fresh = await call("GET", "/api/v1/admin/reconciliation", { token: admin.token });
    expect(fresh.status).toBe(200);
    expect(fresh.json.data.runId).not.toBe(first.json.data.runId);
  });
});
