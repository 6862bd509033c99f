import { Validator } from "@seriousme/openapi-schema-validator";
import oas31Schema from "@seriousme/openapi-schema-validator/schemas/v3.1/schema.json";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { describe, expect, it } from "vitest";
import { PRODUCTION_WARNING } from "../src/lib/openapi";
import { call } from "./support/http";

/**
 * The library's validator, with its OpenAPI 3.1 meta-schema imported as a module: workerd has no
 * file system to read it from at run time, which is all `getAjvValidator` would otherwise do.
 */
class BundledSchemaValidator extends Validator {
  // Replaces the library's (untyped) loader of the meta-schema.
  getAjvValidator(version: string) {
    if (version !== "3.1") throw new Error(`this test serves OpenAPI 3.1 only, not ${version}`);
    const ajv = new Ajv2020({ strict: false, validateFormats: true });
    addFormats(ajv);
    ajv.addFormat("media-range", true);
    return ajv.compile(oas31Schema);
  }
}

type Operation = {
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  responses: Record<string, unknown>;
};

async function document() {
  const res = await call("GET", "/openapi.json");
  expect(res.status).toBe(200);
  return res.json as {
    openapi: string;
    servers: { url: string; description: string }[];
    paths: Record<string, Record<string, Operation>>;
    components: {
      securitySchemes: Record<string, unknown>;
      responses: Record<string, { content: Record<string, { example: unknown }> }>;
    };
  };
}

const operations = (doc: Awaited<ReturnType<typeof document>>) =>
  Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  );

describe("OpenAPI document", () => {
  it("is a valid OpenAPI 3.1 document (checked by a validator library)", async () => {
    const doc = await document();
    const result = await new BundledSchemaValidator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
  });

  it("the validator is not vacuous: a broken document fails it", async () => {
    const doc = await document();
    const broken = { ...doc, paths: { "/health": { get: { responses: { 200: { content: "not-an-object" } } } } } };
    expect((await new BundledSchemaValidator().validate(broken as never)).valid).toBe(false);
  });

  it("lists Development and Production servers, plus the local origin when local", async () => {
    const doc = await document();
    expect(doc.servers.map((s) => s.description)).toEqual(["Local", "Development", "Production"]);
    expect(doc.servers[0]?.url).toBe("http://localhost");
  });

  it("declares the JWT-auth bearer scheme as the contract words it", async () => {
    const doc = await document();
    expect(doc.components.securitySchemes["JWT-auth"]).toEqual({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
      description: "Paste the JWT access token without the Bearer prefix.",
    });
  });

  it("gives every operation a summary, a 500 and its error responses; mutating ones start with the production warning", async () => {
    const doc = await document();
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThan(0);
    for (const { path, method, operation } of ops) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(operation.summary, where).toBeTruthy();
      expect(Object.keys(operation.responses), where).toContain("500");
      // 101 is the success of the WebSocket upgrade route.
      const successes = Object.keys(operation.responses).filter((status) => status.startsWith("2") || status === "101");
      expect(successes.length, where).toBeGreaterThan(0);
      if (["post", "put", "patch", "delete"].includes(method)) {
        expect(operation.description?.startsWith(PRODUCTION_WARNING), where).toBe(true);
        expect(operation.description, where).toContain("**Production uyarisi:**");
        // Any mutating request may carry a body the guard refuses, declared or not.
        expect(Object.keys(operation.responses), where).toEqual(expect.arrayContaining(["400", "413", "415"]));
      }
      if (operation.security?.some((requirement) => "JWT-auth" in requirement)) {
        expect(Object.keys(operation.responses), where).toContain("401");
      }
    }
  });

  it("documents each error status with the envelope and the seed's example body", async () => {
    const doc = await document();
    const badRequest = doc.components.responses.BadRequest?.content["application/json"]?.example;
    expect(badRequest).toEqual({
      isSuccess: false,
      statusCode: 400,
      data: null,
      errors: ["Validation failed"],
      code: "validation_failed",
      timestamp: "2026-01-15T10:30:00.000Z",
    });
    for (const name of [
      "Unauthorized",
      "Forbidden",
      "NotFound",
      "Conflict",
      "PayloadTooLarge",
      "UnsupportedMediaType",
      "TooManyRequests",
      "InternalServerError",
    ]) {
      expect(doc.components.responses[name], name).toBeDefined();
    }
  });
});

describe("/docs", () => {
  it("serves Swagger UI with no external URL and its assets from the Worker", async () => {
    const page = await call("GET", "/docs");
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(page.text).not.toMatch(/https?:\/\//);
    expect(page.text).toContain("persistAuthorization: true");
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(assets).toEqual(["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"]);
    for (const asset of assets) {
      const res = await call("GET", asset);
      expect(res.status, asset).toBe(200);
      expect(res.text.length, asset).toBeGreaterThan(10_000);
    }
  });
});
