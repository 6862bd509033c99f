import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { api, assertError, assertOk, BASE_URL, PASSWORD, uniqueEmail, validator } from "./support/client.ts";

/**
 * The document as a validating client or proxy uses it: every request this suite sends is held
 * against it (support/client.ts), so a schema stricter than the server fails the run. Here, the
 * cases a broken schema got wrong before: a display name with accents and emoji, the key header.
 */
describe("requests validated against the document", () => {
  it("registers a displayName with accented letters and emoji through the typed client, valid for the document and the server", async () => {
    const displayName = "Zoë Ñandú 🚀👩‍💻";
    const request = {
      method: "POST",
      url: `${BASE_URL}/api/v1/auth/register`,
      headers: new Headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ email: uniqueEmail("unicode"), password: PASSWORD, displayName }),
    };
    assert.deepEqual(validator.requestProblems(request), [], "the document accepts the name");
    const session = assertOk(await api().POST("/api/v1/auth/register", { body: JSON.parse(request.body) as never }), 201);
    assert.equal(session.user.displayName, displayName);
  });

  it("the request check is not vacuous: the document refuses what the server refuses", async () => {
    const controlChar = {
      method: "POST",
      url: `${BASE_URL}/api/v1/auth/register`,
      headers: new Headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ email: uniqueEmail("bell"), password: PASSWORD, displayName: "bell\u0007" }),
    };
    assert.ok(validator.requestProblems(controlChar).some((p) => p.startsWith("body/displayName")));
    const tooBig = {
      method: "POST",
      url: `${BASE_URL}/api/v1/messages/credit-transfer`,
      headers: new Headers({ "Content-Type": "application/json", "Idempotency-Key": "k".repeat(256) }),
      body: JSON.stringify({ recipientId: "64d15f9e2e6c8f4d5a654321", amount: 100001 }),
    };
    const problems = validator.requestProblems(tooBig);
    assert.ok(
      problems.some((p) => p.startsWith("header Idempotency-Key")),
      problems.join("; "),
    );
    assert.ok(
      problems.some((p) => p.startsWith("body/amount")),
      problems.join("; "),
    );
    const badQuery = { method: "GET", url: `${BASE_URL}/api/v1/chats?limit=500`, headers: new Headers(), body: "" };
    assert.ok(validator.requestProblems(badQuery).some((p) => p.startsWith("query limit")));
    assert.deepEqual(
      validator.requestProblems({ ...badQuery, url: `${BASE_URL}/api/v1/chats?limit=50` }),
      [],
      "a query integer arrives as a string and is coerced",
    );
    // And the server refuses it too (the check only fails a run when the server accepted).
    const refused = await api().POST("/api/v1/auth/register", { body: JSON.parse(controlChar.body) as never });
    assertError(refused, 400, "validation_failed");
  });
});
