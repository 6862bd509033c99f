import { describe, expect, it } from "vitest";
import { call } from "../support/http";

describe("wallet routes in /openapi.json", () => {
  it("describe a transfer's three shapes as plain objects, so a pending transfer's nulls validate", async () => {
    const { schemas } = (await call("GET", "/openapi.json")).json.components;
    for (const name of ["Transfer", "TransferWithStatus", "PendingTransfer"]) {
      // An allOf with Transfer would require recipientBalance to be an integer AND null.
      expect(schemas[name].allOf, name).toBeUndefined();
      expect(schemas[name].type, name).toBe("object");
    }
    expect(schemas.PendingTransfer.properties.recipientBalance.type).toBe("null");
    expect(schemas.PendingTransfer.properties.status.enum).toEqual(["pending"]);
    const nullable = JSON.stringify(schemas.TransferWithStatus.properties.recipientBalance);
    expect(nullable).toContain("null");
  });

  it("document the transfer as the seed does, with every status it can return", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const op = doc.paths["/api/v1/messages/credit-transfer"].post;
    expect(op.summary).toBe("Send a credit transfer message");
    expect(op.description).toMatch(/^\*\*Production uyarisi:\*\*/);
    expect(op.security).toEqual([{ "JWT-auth": [] }]);
    expect(op.requestBody.content["application/json"].schema.$ref).toBe("#/components/schemas/CreditTransferRequest");
    expect(doc.components.schemas.CreditTransferRequest.example).toEqual({
      recipientId: "64d15f9e2e6c8f4d5a654321",
      amount: 25,
    });
    expect(Object.keys(op.responses).sort()).toEqual([
      "201",
      "202",
      "400",
      "401",
      "403",
      "404",
      "409",
      "413",
      "415",
      "429",
      "500",
    ]);
    expect(op.responses["201"].headers["Idempotent-Replayed"]).toBeDefined();
    expect(op.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toContain("header:Idempotency-Key");
    expect(op.responses["201"].content["application/json"].schema.properties.data.$ref).toBe("#/components/schemas/Transfer");
    expect(op.responses["202"].content["application/json"].schema.properties.data.$ref).toBe(
      "#/components/schemas/PendingTransfer",
    );
    expect(doc.components.schemas.Transfer.example).toMatchObject({
      transferredAmount: 25,
      senderBalance: 75,
      recipientBalance: 125,
    });
  });

  it("document the wallet reads and the admin operations", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const expected: [string, string, string[]][] = [
      ["/api/v1/wallets/me", "get", ["200", "401", "429", "500"]],
      ["/api/v1/wallets/me/transactions", "get", ["200", "400", "401", "429", "500"]],
      ["/api/v1/wallets/me/limits", "get", ["200", "401", "429", "500"]],
      ["/api/v1/wallets/me/transfers/{transferId}", "get", ["200", "400", "401", "404", "429", "500"]],
      ["/api/v1/admin/wallets/{userId}/grants", "post", ["201", "400", "401", "403", "404", "409", "413", "415", "429", "500"]],
      ["/api/v1/admin/reconciliation", "get", ["200", "202", "401", "403", "429", "500"]],
    ];
    for (const [path, method, statuses] of expected) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(Object.keys(op.responses).sort(), `${method} ${path}`).toEqual(statuses);
      expect(op.summary).toBeTruthy();
      expect(op.tags.length).toBeGreaterThan(0);
    }
    for (const name of ["Wallet", "LedgerEntry", "Transfer", "TransferLimits", "Grant", "Reconciliation"]) {
      expect(doc.components.schemas[name], name).toBeDefined();
    }
  });
});
