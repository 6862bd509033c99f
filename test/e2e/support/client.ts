import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import createClient from "openapi-fetch";
import type { components, paths } from "../generated/api.d.ts";
import { loadDocument, ResponseValidator } from "./openapi.ts";

/**
 * What the e2e tests talk through: openapi-fetch typed by the committed generated types (so every
 * request and response is type-checked against the document at `npm run typecheck`), over a
 * fetch that checks every JSON body against the served document's schema at run time.
 */
export const BASE_URL = process.env.E2E_BASE_URL ?? "";
if (!BASE_URL) throw new Error("E2E_BASE_URL is not set: run the suite with `npm run test:e2e`");

export const validator = new ResponseValidator(await loadDocument(BASE_URL));

// One line per test file: how many responses were held against the document, and which ones.
process.on("exit", () => {
  const total = [...validator.checked.values()].reduce((sum, n) => sum + n, 0);
  console.log(`# ${total} responses validated against the OpenAPI document (${validator.checked.size} operation/status pairs)`);
  const { checked, refusedByDocument } = validator.requests;
  console.log(
    `# ${checked} requests validated against the OpenAPI document (${refusedByDocument} refused by it, each also refused by the server)`,
  );
  const dir = process.env.E2E_COVERAGE_DIR;
  if (dir) writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify(Object.fromEntries(validator.checked)));
});

/**
 * fetch that validates every request (parameters and JSON body) and the JSON body of every
 * response against the document: a request the document refuses must be refused by the server
 * too, else the document is stricter than the server and the test fails.
 */
export const validatingFetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
  const request = new Request(input, init);
  const sent = { method: request.method, url: request.url, headers: request.headers, body: await request.clone().text() };
  const response = await fetch(request);
  validator.checkRequest(sent, response.status);
  const type = response.headers.get("Content-Type") ?? "";
  if (!type.includes("application/json")) {
    throw new Error(`${request.method} ${request.url} answered ${response.status} with Content-Type ${type}, not JSON`);
  }
  const body = await response.clone().json();
  validator.validate(request.method, new URL(request.url).pathname, response.status, body);
  return response;
};

export type Client = ReturnType<typeof createClient<paths>>;

/** A typed client, optionally signed in. */
export function api(token?: string): Client {
  return createClient<paths>({
    baseUrl: BASE_URL,
    fetch: validatingFetch,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
}

/** A request the typed client cannot express (wrong media type, broken JSON, 70 KiB body), still validated. */
export async function raw(method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) {
  const response = await validatingFetch(`${BASE_URL}${path}`, { method, body: init.body, headers: init.headers });
  return { status: response.status, headers: response.headers, json: (await response.json()) as ErrorBody };
}

type ErrorBody = {
  isSuccess: boolean;
  statusCode: number;
  data: unknown;
  errors: string[] | null;
  code?: string;
  timestamp: string;
};

const GENERIC: Record<number, string> = {
  400: "Validation failed",
  401: "Authentication required",
  403: "Insufficient permissions",
  404: "Resource not found",
  409: "Resource already exists or cannot be changed in its current state",
  413: "Payload too large",
  415: "Unsupported media type",
  426: "Upgrade required",
  429: "Too many requests",
};

/** API.md §1: the error envelope, its generic first sentence and the stable code. */
export function assertError(
  result: { response: Response; error?: unknown } | { status: number; json: unknown },
  status: number,
  code: string,
) {
  const actualStatus = "response" in result ? result.response.status : result.status;
  const body = ("response" in result ? result.error : result.json) as ErrorBody;
  assert.equal(actualStatus, status, `expected ${status} ${code}, got ${actualStatus} ${JSON.stringify(body)}`);
  assert.equal(body.isSuccess, false);
  assert.equal(body.statusCode, status);
  assert.equal(body.data, null);
  assert.equal(body.code, code, `code of ${JSON.stringify(body)}`);
  assert.equal(body.errors?.[0], GENERIC[status]);
  assert.match(body.timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  return body;
}

/** The success envelope; returns its data. */
export function assertOk<T>(
  result: { response: Response; data?: { data: T; statusCode: number; isSuccess: boolean } },
  status: number,
): T {
  assert.equal(
    result.response.status,
    status,
    `expected ${status}, got ${result.response.status} ${JSON.stringify((result as { error?: unknown }).error ?? result.data)}`,
  );
  assert.ok(result.data, "no body");
  assert.equal(result.data.isSuccess, true);
  assert.equal(result.data.statusCode, status);
  return result.data.data;
}

let counter = 0;
/** An email nobody registered yet in this run. */
export const uniqueEmail = (label: string) =>
  `${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}.${process.pid}.${Date.now()}.${++counter}@e2e.example.com`;

export const PASSWORD = "correct horse battery";

/** Registers a fresh person through the API, as a client app does; returns the session. */
export async function registerUser(label: string, email = uniqueEmail(label)) {
  const session = assertOk(
    await api().POST("/api/v1/auth/register", { body: { email, password: PASSWORD, displayName: label } }),
    201,
  );
  return { ...session, email, id: session.user.id, client: api(session.accessToken) };
}

/** The admin of the local environment (ADMIN_EMAILS = admin@example.com in wrangler.toml), signed in once per file. */
let adminSession: Promise<Client> | undefined;
export function admin(): Promise<Client> {
  adminSession ??= (async () => {
    const email = "admin@example.com";
    const registered = await api().POST("/api/v1/auth/register", { body: { email, password: PASSWORD, displayName: "Admin" } });
    if (registered.response.status !== 201) assertError(registered, 409, "already_exists");
    const session = assertOk(await api().POST("/api/v1/auth/login", { body: { email, password: PASSWORD } }), 200);
    assert.equal(session.user.role, "admin");
    return api(session.accessToken);
  })();
  return adminSession;
}

/**
 * A transfer's 201 (the operation also documents 202 `pending`, so its success type is a union
 * of both shapes; a test that expects it posted narrows it here, after checking the status).
 */
export function assertPosted(result: { response: Response; data?: { data: unknown; statusCode: number; isSuccess: boolean } }) {
  return assertOk(
    result as { response: Response; data?: { data: components["schemas"]["Transfer"]; statusCode: number; isSuccess: boolean } },
    201,
  );
}
