import { describe, expect, it } from "vitest";
import { DEPLOYED_URLS } from "./support/deployment";
import { call, expectError } from "./support/http";

describe("platform", () => {
  it("GET /health answers in the envelope with a request id", async () => {
    const res = await call("GET", "/health");
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      isSuccess: true,
      statusCode: 200,
      errors: null,
      data: { status: "ok", environment: "local" },
    });
    expect(res.headers.get("X-Request-Id")).toMatch(/.{8,}/);
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
  });

  it("unknown routes and wrong methods are 404 envelopes", async () => {
    expectError(await call("GET", "/nope"), 404, "not_found");
    expectError(await call("DELETE", "/health"), 404, "not_found");
  });

  it("bodies: malformed JSON, non-JSON and oversize", async () => {
    expectError(
      await call("POST", "/health", { rawBody: "{oops", headers: { "Content-Type": "application/json" } }),
      400,
      "malformed_json",
    );
    expectError(
      await call("POST", "/health", { rawBody: "a=b", headers: { "Content-Type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
    const big = JSON.stringify({ pad: "x".repeat(70 * 1024) });
    expectError(
      await call("POST", "/health", { rawBody: big, headers: { "Content-Type": "application/json" } }),
      413,
      "payload_too_large",
    );
  });

  it("serves the OpenAPI document and the docs", async () => {
    const doc = await call("GET", "/openapi.json");
    expect(doc.status).toBe(200);
    expect(doc.json.openapi).toBe("3.1.0");
    const docs = await call("GET", "/docs");
    expect(docs.status).toBe(200);
    expect(docs.text).toContain("swagger-ui-bundle.js");
    const bundle = await call("GET", "/docs/swagger-ui-bundle.js");
    expect(bundle.status).toBe(200);
  });
});

describe("configuration", () => {
  it("a bad var answers 500 internal_error instead of serving wrongly", async () => {
    const res = await call("GET", "/health", { vars: { MAX_TRANSFER_AMOUNT: "lots" } });
    expectError(res, 500, "internal_error");
    expect(res.text).not.toContain("MAX_TRANSFER_AMOUNT");
  });

  it("outside local, the default or a short JWT secret refuses to serve", async () => {
    expectError(await call("GET", "/health", { vars: { ENVIRONMENT: "production" } }), 500, "internal_error");
    expectError(await call("GET", "/health", { vars: { ENVIRONMENT: "dev", JWT_SECRET: "short" } }), 500, "internal_error");
    const ok = await call("GET", "/health", {
      vars: { ...DEPLOYED_URLS, ENVIRONMENT: "dev", ADMIN_EMAILS: "", JWT_SECRET: "a-real-secret-of-at-least-32-bytes-long!" },
    });
    expect(ok.status).toBe(200);
    expect(ok.json.data.environment).toBe("dev");
  });

  it("outside local, ADMIN_EMAILS must be empty: admins are made by an operator, never by registering", async () => {
    const secret = "a-real-secret-of-at-least-32-bytes-long!";
    for (const ENVIRONMENT of ["dev", "production"]) {
      const res = await call("GET", "/health", {
        vars: { ...DEPLOYED_URLS, ENVIRONMENT, JWT_SECRET: secret, ADMIN_EMAILS: "boss@example.com" },
      });
      expectError(res, 500, "internal_error");
      expect(res.text).not.toContain("boss@example.com");
      const ok = await call("GET", "/health", { vars: { ...DEPLOYED_URLS, ENVIRONMENT, JWT_SECRET: secret, ADMIN_EMAILS: " " } });
      expect(ok.status).toBe(200);
    }
    // Local development keeps its convenience.
    expect((await call("GET", "/health", { vars: { ADMIN_EMAILS: "boss@example.com" } })).status).toBe(200);
  });
});

describe("input edge cases", () => {
  it("a forged token with a past exp is invalid_token, never token_expired", async () => {
    const b64 = (value: object) => btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const forged = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "64d15f9e2e6c8f4d5a123456", role: "user", exp: 1, iss: "credit-chat", aud: "credit-chat-api" })}.AAAA`;
    expectError(await call("GET", "/api/v1/users/me", { token: forged }), 401, "invalid_token");
  });

  it("limit accepts digits only", async () => {
    const { seedUser } = await import("./support/users");
    const user = await seedUser();
    for (const limit of ["0x10", "1e1", "+5", "5.0", " 5", "0", "101"]) {
      expectError(
        await call("GET", `/api/v1/chats?limit=${encodeURIComponent(limit)}`, { token: user.token }),
        400,
        "validation_failed",
      );
    }
    expect((await call("GET", "/api/v1/chats?limit=16", { token: user.token })).status).toBe(200);
  });

  it("a body on a mutating route without a declared body still goes through the guard", async () => {
    const { seedUser } = await import("./support/users");
    const user = await seedUser();
    const other = await seedUser();
    const path = `/api/v1/users/${other.id}/block`;
    expectError(
      await call("POST", path, { token: user.token, rawBody: "x", headers: { "Content-Type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
    expectError(
      await call("POST", path, { token: user.token, rawBody: "{bad", headers: { "Content-Type": "application/json" } }),
      400,
      "malformed_json",
    );
  });
});
