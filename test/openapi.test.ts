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

const operations = <O extends Operation>(doc: { paths: Record<string, Record<string, O>> }) =>
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

  it("documents a 429 on every operation: the envelope with its example, Retry-After, and what the budgets are", async () => {
    const doc = await document();
    const missing = operations(doc)
      .filter(
        ({ operation }) =>
          (operation.responses["429"] as { $ref?: string } | undefined)?.$ref !== "#/components/responses/TooManyRequests",
      )
      .map(({ path, method }) => `${method} ${path}`);
    expect(missing).toEqual([]);
    const tooMany = doc.components.responses.TooManyRequests as unknown as {
      description: string;
      headers: Record<string, { schema: { type: string } }>;
      content: Record<string, { schema: { $ref: string }; example: unknown }>;
    };
    expect(tooMany.headers["Retry-After"]?.schema.type).toBe("integer");
    expect(tooMany.content["application/json"]?.schema.$ref).toBe("#/components/schemas/ErrorEnvelope");
    expect(tooMany.content["application/json"]?.example).toEqual({
      isSuccess: false,
      statusCode: 429,
      data: null,
      errors: ["Too many requests"],
      code: "rate_limited",
      timestamp: "2026-01-15T10:30:00.000Z",
    });
    expect(tooMany.description).toContain("budget");
    const info = (doc as unknown as { info: { description: string } }).info;
    expect(info.description).toContain("**Rate limits.**");
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

type Schema = Record<string, unknown>;
type Parameter = { name: string; in: string; schema?: Schema; required?: boolean };
type FullOperation = Operation & {
  operationId?: string;
  tags?: string[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema?: Schema }> };
  responses: Record<string, { $ref?: string; headers?: Record<string, unknown> }>;
};

/** Verbs an operationId may start with (add one here when a route needs a new verb). */
const OPERATION_VERBS =
  /^(get|list|search|create|register|send|log|refresh|change|block|unblock|suspend|reinstate|add|remove|mark|edit|delete|grant|connect|open|start|cancel|revoke|update|set)([A-Z][A-Za-z0-9]*)?$/;

async function fullDocument() {
  return (await document()) as unknown as {
    info: { license?: { name?: string; url?: string }; contact?: { name?: string; url?: string } };
    tags?: { name: string; description?: string }[];
    paths: Record<string, Record<string, FullOperation>>;
    components: { schemas: Record<string, Schema> };
  };
}

/** Resolves local `$ref`s (one level at a time, as the walker meets them). */
const resolve = (doc: object, schema: Schema): Schema => {
  let node = schema;
  while (typeof node.$ref === "string") {
    node = (node.$ref as string)
      .slice(2)
      .split("/")
      .reduce<unknown>((at, token) => (at as Record<string, unknown>)[token.replaceAll("~1", "/")], doc) as Schema;
  }
  return node;
};

/** Every place under `schema` (a request input) that a client could make arbitrarily large. */
function unbounded(doc: object, schema: Schema, where: string, seen = new Set<Schema>()): string[] {
  const node = resolve(doc, schema);
  if (seen.has(node)) return [];
  seen.add(node);
  const problems: string[] = [];
  for (const key of ["oneOf", "anyOf", "allOf"] as const) {
    for (const [i, member] of ((node[key] as Schema[] | undefined) ?? []).entries()) {
      problems.push(...unbounded(doc, member, `${where}/${key}/${i}`, seen));
    }
  }
  const types = ([] as unknown[]).concat(node.type ?? []);
  const fixed = node.enum !== undefined || node.const !== undefined;
  if (types.includes("string") && !fixed && node.maxLength === undefined) problems.push(`${where}: string without maxLength`);
  if ((types.includes("integer") || types.includes("number")) && !fixed) {
    if (node.minimum === undefined && node.exclusiveMinimum === undefined) problems.push(`${where}: number without minimum`);
    if (node.maximum === undefined && node.exclusiveMaximum === undefined) problems.push(`${where}: number without maximum`);
  }
  if (types.includes("array")) {
    if (node.maxItems === undefined) problems.push(`${where}: array without maxItems`);
    if (node.items) problems.push(...unbounded(doc, node.items as Schema, `${where}/items`, seen));
  }
  for (const [name, property] of Object.entries((node.properties as Record<string, Schema> | undefined) ?? {})) {
    problems.push(...unbounded(doc, property, `${where}.${name}`, seen));
  }
  return problems;
}

/** Every `pattern` in the document, with where it is. */
function patterns(node: unknown, where: string, out: [string, string][] = []): [string, string][] {
  if (Array.isArray(node)) node.forEach((item, i) => patterns(item, `${where}/${i}`, out));
  else if (node && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "pattern" && typeof value === "string") out.push([where, value]);
      else patterns(value, `${where}/${key}`, out);
    }
  }
  return out;
}

describe("OpenAPI document: what SDK generators, linters and validating proxies rely on", () => {
  it("gives every operation a unique camelCase, verb-first operationId", async () => {
    const doc = await fullDocument();
    const ids = operations(doc).map(({ path, method, operation }) => {
      const id = (operation as FullOperation).operationId;
      expect(id, `${method.toUpperCase()} ${path}`).toMatch(OPERATION_VERBS);
      return id;
    });
    expect(new Set(ids).size).toBe(ids.length);
    const byRoute = Object.fromEntries(
      operations(doc).map(({ path, method, operation }) => [`${method} ${path}`, (operation as FullOperation).operationId]),
    );
    // The names the contract gives as examples (API.md, "Details of the document").
    expect(byRoute["post /api/v1/messages/credit-transfer"]).toBe("sendCreditTransfer");
    expect(byRoute["get /api/v1/messages/chat/{chatId}"]).toBe("listChatMessages");
    expect(byRoute["get /api/v1/wallets/me"]).toBe("getMyWallet");
  });

  it("declares every tag an operation uses at the top level, each with a description", async () => {
    const doc = await fullDocument();
    const declared = new Map((doc.tags ?? []).map((tag) => [tag.name, tag.description]));
    const used = new Set<string>();
    for (const { path, method, operation } of operations(doc)) {
      const tags = (operation as FullOperation).tags ?? [];
      expect(tags.length, `${method} ${path}`).toBeGreaterThan(0);
      for (const tag of tags) {
        expect(declared.has(tag), `${method} ${path}: tag ${tag}`).toBe(true);
        used.add(tag);
      }
    }
    for (const [name, description] of declared) {
      expect(description, name).toBeTruthy();
      expect(used.has(name), `top-level tag ${name} is used`).toBe(true);
    }
  });

  it("names a license and a contact in info", async () => {
    const { info } = await fullDocument();
    expect(info.license?.name).toBeTruthy();
    expect(info.license?.url).toMatch(/^https:\/\//);
    expect(info.contact?.name).toBeTruthy();
    expect(info.contact?.url).toMatch(/^https:\/\//);
  });

  it("bounds every request input: strings maxLength, numbers minimum and maximum, arrays maxItems", async () => {
    const doc = await fullDocument();
    const problems: string[] = [];
    for (const { path, method, operation } of operations(doc)) {
      const op = operation as FullOperation;
      for (const parameter of op.parameters ?? []) {
        if (parameter.schema)
          problems.push(...unbounded(doc, parameter.schema, `${method} ${path} ${parameter.in}:${parameter.name}`));
      }
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        if (media.schema) problems.push(...unbounded(doc, media.schema, `${method} ${path} body(${type})`));
      }
    }
    expect(problems).toEqual([]);
    const transfer = doc.components.schemas.CreditTransferRequest as { properties: Record<string, Schema> };
    expect(transfer.properties.amount).toMatchObject({ type: "integer", minimum: 1, maximum: 100000 });
    expect(transfer.properties.recipientId).toMatchObject({ minLength: 24, maxLength: 24, pattern: "^[0-9a-f]{24}$" });
    // The deployment's own MAX_TRANSFER_AMOUNT, not only the default.
    const other = await call("GET", "/openapi.json", { vars: { MAX_TRANSFER_AMOUNT: "500" } });
    expect(other.json.components.schemas.CreditTransferRequest.properties.amount.maximum).toBe(500);
  });

  it("the bounds check is not vacuous: an unbounded string, number or array is reported", async () => {
    const doc = await fullDocument();
    const schema = {
      type: "object",
      properties: {
        a: { type: "string" },
        b: { type: "integer", minimum: 0 },
        c: { type: "array", items: { type: "string", maxLength: 3 } },
      },
    };
    expect(unbounded(doc, schema, "x")).toEqual([
      "x.a: string without maxLength",
      "x.b: number without maximum",
      "x.c: array without maxItems",
    ]);
  });

  it("writes every pattern as plain ECMA-262 a JSON Schema validator reads the same: no flags, no \\p{…}", async () => {
    const doc = await fullDocument();
    const found = patterns(doc, "#");
    expect(found.length).toBeGreaterThan(3);
    for (const [where, pattern] of found) {
      expect(pattern, where).not.toMatch(/\\[pP]\{/);
      expect(pattern, where).not.toMatch(/\/[dgimsuvy]+$/);
      expect(() => new RegExp(pattern), where).not.toThrow();
      expect(() => new RegExp(pattern, "u"), where).not.toThrow();
    }
  });

  it("documents what each route option implies: Idempotency-Key and Idempotent-Replayed, 429 with X-RateLimit-*, 403 for admins", async () => {
    const doc = await fullDocument();
    const idempotent: string[] = [];
    const limited: string[] = [];
    for (const { path, method, operation } of operations(doc)) {
      const op = operation as FullOperation;
      const where = `${method} ${path}`;
      const successes = Object.entries(op.responses).filter(([status]) => status.startsWith("2"));
      const key = op.parameters?.find((p) => p.in === "header" && p.name === "Idempotency-Key");
      if (key) {
        idempotent.push(where);
        expect(key.schema, where).toMatchObject({
          type: "string",
          minLength: 1,
          maxLength: 255,
          pattern: "^[\\x20-\\x7e]{1,255}$",
        });
        expect(Object.keys(op.responses), where).toEqual(expect.arrayContaining(["400", "409"]));
        for (const [status, response] of successes)
          expect(response.headers?.["Idempotent-Replayed"], `${where} ${status}`).toBeDefined();
      }
      // Every operation has a 429 (the budgets); those with an exact limit document its headers on every success.
      if (successes.some(([, response]) => response.headers?.["X-RateLimit-Limit"])) {
        limited.push(where);
        for (const [status, response] of successes) {
          for (const header of ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]) {
            expect(response.headers?.[header], `${where} ${status} ${header}`).toBeDefined();
          }
        }
      }
      if (path.startsWith("/api/v1/admin/")) expect(Object.keys(op.responses), where).toContain("403");
    }
    expect(idempotent.sort()).toEqual(
      [
        "post /api/v1/admin/wallets/{userId}/grants",
        "post /api/v1/messages",
        "post /api/v1/messages/credit-transfer",
        "post /api/v2/messages",
      ].sort(),
    );
    expect(limited).toEqual(
      expect.arrayContaining(["post /api/v1/auth/register", "post /api/v1/auth/login", "post /api/v1/messages/credit-transfer"]),
    );
    const tooMany = (await document()).components.responses.TooManyRequests as unknown as { headers: Record<string, unknown> };
    expect(Object.keys(tooMany.headers).sort()).toEqual([
      "Retry-After",
      "X-RateLimit-Limit",
      "X-RateLimit-Remaining",
      "X-RateLimit-Reset",
    ]);
  });

  it("references the realtime frames from the realtime route", async () => {
    const doc = await fullDocument();
    const upgrade = doc.paths["/api/v1/realtime"]?.get?.responses["101"] as unknown as {
      content: Record<string, { schema: Schema }>;
    };
    const frames = resolve(doc, upgrade.content["application/json"]?.schema as Schema);
    const members = ((frames.anyOf ?? frames.oneOf) as Schema[]).map((member) => member.$ref);
    expect(members).toEqual([
      "#/components/schemas/RealtimeFrame",
      "#/components/schemas/RealtimePongFrame",
      "#/components/schemas/RealtimeErrorFrame",
    ]);
  });
});

describe("/docs", () => {
  it("serves Swagger UI with no external URL and its assets from the Worker", async () => {
    const page = await call("GET", "/docs");
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(page.text).not.toMatch(/https?:\/\//);
    // The playground's own script is a served file (the page's CSP allows no inline script).
    const script = (await call("GET", "/docs/playground.js")).text;
    expect(script).not.toMatch(/https?:\/\//);
    expect(script).toContain("persistAuthorization: true");
    // Executing a sign-in operation authorizes the playground (test/e2e/browser.ts drives it in Chromium).
    expect(script).toContain("responseInterceptor");
    expect(script).toContain('preauthorizeApiKey("JWT-auth", token)');
    for (const path of ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/password"]) {
      expect(script).toContain(`"${path}"`);
    }
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(assets).toEqual(["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/playground.js"]);
    for (const asset of assets) {
      const res = await call("GET", asset);
      expect(res.status, asset).toBe(200);
      expect(res.text.length, asset).toBeGreaterThan(asset.endsWith("playground.js") ? 500 : 10_000);
    }
  });
});

describe("ended sessions and admin checks in the document", () => {
  it("the routes that refuse an ended session's token say 401 session_ended; a route that reads does not", async () => {
    const doc = await document();
    const refusing: [string, string][] = [
      ["/api/v1/messages/credit-transfer", "post"],
      ["/api/v1/admin/wallets/{userId}/grants", "post"],
      ["/api/v1/auth/logout-all", "post"],
      ["/api/v1/auth/password", "post"],
      ["/api/v1/realtime/tickets", "post"],
      ["/api/v1/admin/audit", "get"],
      ["/api/v1/admin/users/{userId}/suspension", "post"],
      ["/api/v1/admin/users/{userId}/suspension", "delete"],
      ["/api/v1/admin/reconciliations", "post"],
      ["/api/v1/admin/reconciliation", "get"],
      ["/api/v1/admin/reconciliations/{runId}", "get"],
    ];
    for (const [path, method] of refusing) {
      const operation = doc.paths[path]?.[method];
      expect(operation?.description, `${method} ${path}`).toContain("401 `session_ended`");
      expect(Object.keys(operation?.responses ?? {}), `${method} ${path}`).toContain("401");
    }
    for (const [path, method] of refusing.filter(([p]) => p.startsWith("/api/v1/admin/"))) {
      const operation = doc.paths[path]![method]!;
      expect(operation.description, `${method} ${path}`).toContain("403 `account_suspended`");
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(["401", "403"]));
    }
    expect(doc.paths["/api/v1/users/me"]!.get!.description).not.toContain("session_ended");
  });

  it("GET /api/v1/admin/audit is documented like its siblings", async () => {
    const operation = (await document()).paths["/api/v1/admin/audit"]!.get! as Operation & {
      operationId: string;
      tags: string[];
    };
    expect(operation).toMatchObject({ operationId: "listAdminAudit", tags: ["Admin"], summary: "List the admin audit log" });
    expect(operation.security).toEqual([{ "JWT-auth": [] }]);
    expect(Object.keys(operation.responses).sort()).toEqual(["200", "400", "401", "403", "429", "500"]);
  });
});
