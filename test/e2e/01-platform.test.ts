import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { api, assertError, assertOk, BASE_URL, raw, registerUser, validator } from "./support/client.ts";

/** The platform as any client meets it over HTTP: health, the document, /docs, and the body guard. */
describe("platform over HTTP", () => {
  it("GET /health answers the envelope with status ok in the local environment", async () => {
    const health = assertOk(await api().GET("/health"), 200);
    assert.equal(health.status, "ok");
    assert.equal(health.environment, "local");
    assert.match(health.version, /^\d+\.\d+\.\d+/);
  });

  it("serves an OpenAPI 3.1 document with Local, Development and Production servers and the JWT-auth scheme", () => {
    const doc = validator.doc;
    assert.equal(doc.openapi, "3.1.0");
    const servers = (doc.servers ?? []).map((server) => server.description);
    assert.deepEqual(servers, ["Local", "Development", "Production"]);
    assert.equal(doc.servers?.[0]?.url, BASE_URL);
    assert.deepEqual(doc.components?.securitySchemes?.["JWT-auth"], {
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
      description: "Paste the JWT access token without the Bearer prefix.",
    });
  });

  it("GET /openapi.json is itself a documented operation, answered as documented", async () => {
    const { data, response } = await api().GET("/openapi.json");
    assert.equal(response.status, 200);
    assert.equal((data as { openapi?: string } | undefined)?.openapi, "3.1.0");
  });

  it("an unknown route is a 404 envelope, for any method", async () => {
    assertError(await raw("GET", "/api/v1/does-not-exist"), 404, "not_found");
    assertError(await raw("DELETE", "/nope"), 404, "not_found");
  });

  it("a body over 64 KiB is 413 payload_too_large before anything reads it", async () => {
    const body = JSON.stringify({ email: "x@example.com", password: "p".repeat(70 * 1024), displayName: "x" });
    const res = await raw("POST", "/api/v1/auth/register", { body, headers: { "Content-Type": "application/json" } });
    assertError(res, 413, "payload_too_large");
  });

  it("a body that is not JSON is 415 unsupported_media_type", async () => {
    const res = await raw("POST", "/api/v1/auth/register", { body: "email=a@b.c", headers: { "Content-Type": "text/plain" } });
    assertError(res, 415, "unsupported_media_type");
  });

  it("unparsable JSON is 400 malformed_json", async () => {
    const res = await raw("POST", "/api/v1/auth/register", {
      body: '{"email": ',
      headers: { "Content-Type": "application/json" },
    });
    assertError(res, 400, "malformed_json");
  });

  it("a body nested 10,000 deep is 400 validation_failed, before auth and before a key's fingerprint, never 500", async () => {
    const deep = `${"[".repeat(10_000)}${"]".repeat(10_000)}`;
    const json = { "Content-Type": "application/json" };
    assertError(await raw("POST", "/api/v1/auth/login", { body: deep, headers: json }), 400, "validation_failed");
    // Hidden in a member the schema drops, under an Idempotency-Key whose fingerprint reads the body as sent.
    const alice = await registerUser("Deep Alice");
    const bob = await registerUser("Deep Bob");
    const chat = assertOk(await alice.client.POST("/api/v1/chats", { body: { type: "direct", memberId: bob.id } }), 201);
    const res = await raw("POST", "/api/v2/messages", {
      body: `{"chatId":"${chat.id}","content":"hi","extra":${deep}}`,
      headers: { ...json, Authorization: `Bearer ${alice.accessToken}`, "Idempotency-Key": `deep-${process.pid}-${Date.now()}` },
    });
    assertError(res, 400, "validation_failed");
    const page = assertOk(
      await alice.client.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId: chat.id } } }),
      200,
    );
    assert.deepEqual(page.items, []);
  });

  it("/docs is the playground page and its assets come from the Worker itself", async () => {
    const page = await fetch(`${BASE_URL}/docs`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("Content-Type") ?? "", /text\/html/);
    const csp = page.headers.get("Content-Security-Policy") ?? "";
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /frame-ancestors 'none'/);
    const html = await page.text();
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] ?? "");
    assert.ok(sources.length >= 2, html);
    for (const source of sources) assert.ok(source.startsWith("/"), `${source} is not served by the Worker`);

    const js = await fetch(`${BASE_URL}/docs/swagger-ui-bundle.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get("Content-Type") ?? "", /javascript/);
    assert.match(await js.text(), /SwaggerUIBundle/);
    const css = await fetch(`${BASE_URL}/docs/swagger-ui.css`);
    assert.equal(css.status, 200);
    assert.match(css.headers.get("Content-Type") ?? "", /text\/css/);
    assert.match(await css.text(), /\.swagger-ui/);
  });
});
