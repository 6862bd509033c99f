import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

/**
 * Checks every response the suite receives against the schema the served OpenAPI document gives
 * for that operation and status (the response `$ref`s followed to `components.responses`, schema
 * `$ref`s resolved by ajv inside the document itself). A status the operation does not document
 * is a failure too, so the document cannot leave out what the server really answers.
 */
// ajv-formats is CommonJS; under nodenext its default import is typed as the module object.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

export type OpenApiDocument = {
  openapi: string;
  servers?: { url: string; description?: string }[];
  paths: Record<string, Record<string, { responses?: Record<string, unknown>; summary?: string; description?: string }>>;
  components?: Record<string, Record<string, unknown>>;
};

const DOC_ID = "https://credit-chat.e2e/openapi.json";

/** JSON-pointer escaping of one reference token. */
const escapeToken = (token: string) => token.replaceAll("~", "~0").replaceAll("/", "~1");

function pointerGet(doc: unknown, pointer: string): unknown {
  if (!pointer.startsWith("#/")) throw new Error(`only local $refs are supported, got ${pointer}`);
  let node: unknown = doc;
  for (const raw of pointer.slice(2).split("/")) {
    const token = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    node = (node as Record<string, unknown> | undefined)?.[token];
  }
  return node;
}

/**
 * `E2E_TAMPER_SCHEMA='<json pointer>=<json>'` replaces one node of the served document before it
 * is used, so a deliberately wrong response schema can be shown to fail the suite, e.g.
 * `E2E_TAMPER_SCHEMA='#/components/schemas/Health/properties/status={"const":"healthy"}'`.
 */
export function applyTamper(doc: OpenApiDocument, spec = process.env.E2E_TAMPER_SCHEMA): OpenApiDocument {
  if (!spec) return doc;
  const at = spec.indexOf("=");
  const pointer = spec.slice(0, at);
  const value = JSON.parse(spec.slice(at + 1));
  const tokens = pointer.slice(2).split("/");
  const last = tokens.pop() ?? "";
  const parent = pointerGet(doc, `#/${tokens.join("/")}`) as Record<string, unknown> | undefined;
  if (!parent || !(last in parent)) throw new Error(`E2E_TAMPER_SCHEMA: ${pointer} is not in the served document`);
  parent[last] = value;
  return doc;
}

/** Matches a concrete path to the document's path template ("/api/v1/chats/{chatId}"). */
export function matchPathTemplate(doc: OpenApiDocument, pathname: string): string | undefined {
  if (doc.paths[pathname]) return pathname;
  for (const template of Object.keys(doc.paths)) {
    const pattern = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+")}$`);
    if (pattern.test(pathname)) return template;
  }
  return undefined;
}

type ParameterObject = { name: string; in: "path" | "query" | "header" | "cookie"; required?: boolean; schema?: object };
type OperationObject = {
  parameters?: (ParameterObject | { $ref: string })[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: object }> } | { $ref: string };
};

/** A request as sent: method, URL, headers and body text. */
export type SentRequest = { method: string; url: string; headers: Headers; body: string };

export class ResponseValidator {
  readonly doc: OpenApiDocument;
  readonly #ajv: Ajv2020;
  /** Parameters arrive as strings: this instance coerces them to their schema's type first, as servers do. */
  readonly #params: Ajv2020;
  readonly #compiledParams = new Map<string, ValidateFunction>();
  /** How many requests were checked against the document, and how many of those the document refused. */
  readonly requests = { checked: 0, refusedByDocument: 0 };
  readonly #compiled = new Map<string, ValidateFunction>();
  /** How many responses were checked, per "METHOD template status": the suite asserts coverage from it. */
  readonly checked = new Map<string, number>();

  constructor(doc: OpenApiDocument) {
    this.doc = doc;
    // strict: false because the document carries OpenAPI keywords (example, …) next to JSON Schema.
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.#ajv);
    this.#ajv.addSchema({ ...doc, $id: DOC_ID } as object);
    this.#params = new Ajv2020({ strict: false, allErrors: true, coerceTypes: true });
    addFormats(this.#params);
    this.#params.addSchema({ ...doc, $id: DOC_ID } as object);
  }

  /**
   * What the document says is wrong with a request (path, query and header parameters, JSON
   * body), as one line per problem; [] when the document accepts it or does not describe the route.
   */
  requestProblems(request: SentRequest): string[] {
    const url = new URL(request.url);
    const template = matchPathTemplate(this.doc, url.pathname);
    const lower = request.method.toLowerCase();
    const operation = template ? (this.doc.paths[template]?.[lower] as OperationObject | undefined) : undefined;
    if (!template || !operation) return [];
    const problems: string[] = [];
    const names = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);
    const values = new RegExp(`^${template.replace(/\{[^}]+\}/g, "([^/]+)")}$`).exec(url.pathname)?.slice(1) ?? [];
    const pathValues = Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(values[i] ?? "")]));
    for (const [i, entry] of (operation.parameters ?? []).entries()) {
      const parameter = ("$ref" in entry ? pointerGet(this.doc, entry.$ref) : entry) as ParameterObject;
      const value =
        parameter.in === "path"
          ? pathValues[parameter.name]
          : parameter.in === "query"
            ? (url.searchParams.get(parameter.name) ?? undefined)
            : parameter.in === "header"
              ? (request.headers.get(parameter.name) ?? undefined)
              : undefined;
      if (value === undefined) {
        if (parameter.required) problems.push(`${parameter.in} ${parameter.name}: required`);
        continue;
      }
      const pointer =
        "$ref" in entry ? `${entry.$ref}/schema` : `#/paths/${escapeToken(template)}/${lower}/parameters/${i}/schema`;
      let check = this.#compiledParams.get(pointer);
      if (!check) {
        // Wrapped in an object so ajv can coerce the string in place ("50" → 50 for an integer).
        check = this.#params.compile({ type: "object", properties: { value: { $ref: `${DOC_ID}${pointer}` } } });
        this.#compiledParams.set(pointer, check);
      }
      if (!check({ value })) problems.push(...(check.errors ?? []).map((e) => `${parameter.in} ${parameter.name}: ${e.message}`));
    }
    const body = operation.requestBody && ("$ref" in operation.requestBody ? undefined : operation.requestBody);
    const json = body?.content?.["application/json"];
    if (request.body === "") {
      if (body?.required) problems.push("body: required");
    } else if (json?.schema && (request.headers.get("Content-Type") ?? "").includes("json")) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(request.body);
      } catch {
        return [...problems, "body: not JSON"];
      }
      const fn = this.#validatorAt(`#/paths/${escapeToken(template)}/${lower}/requestBody/content/application~1json/schema`);
      if (!fn(parsed))
        problems.push(...(fn.errors ?? []).map((e) => `body${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`));
    }
    return problems;
  }

  /**
   * Holds a request and its answer against the document: a request the document refuses but the
   * server accepted means the document is stricter than the server, which fails the run.
   */
  checkRequest(request: SentRequest, status: number) {
    const problems = this.requestProblems(request);
    this.requests.checked += 1;
    if (problems.length === 0) return;
    this.requests.refusedByDocument += 1;
    if (status < 400) {
      throw new Error(
        `${request.method} ${request.url} was accepted by the server (${status}) but its request does not match the OpenAPI document:\n  ${problems.join("\n  ")}\nbody: ${request.body.slice(0, 800)}`,
      );
    }
  }

  #validatorAt(pointer: string) {
    let fn = this.#compiled.get(pointer);
    if (!fn) {
      fn = this.#ajv.compile({ $ref: `${DOC_ID}${pointer}` });
      this.#compiled.set(pointer, fn);
    }
    return fn;
  }

  /** The JSON pointer of the response schema documented for this operation and status. */
  schemaPointer(method: string, template: string, status: number): string {
    const lower = method.toLowerCase();
    const operation = this.doc.paths[template]?.[lower];
    if (!operation) throw new Error(`${method} ${template} is not in the OpenAPI document`);
    const key = String(status);
    let response = operation.responses?.[key];
    let pointer = `#/paths/${escapeToken(template)}/${lower}/responses/${key}`;
    if (response === undefined)
      throw new Error(`${method} ${template} answered ${status}, which its OpenAPI operation does not document`);
    while (typeof response === "object" && response !== null && "$ref" in response) {
      pointer = String((response as { $ref: string }).$ref);
      response = pointerGet(this.doc, pointer);
    }
    const json = (response as { content?: Record<string, unknown> }).content?.["application/json"];
    if (!json) throw new Error(`${method} ${template} ${status}: no application/json schema documented`);
    return `${pointer}/content/application~1json/schema`;
  }

  /**
   * Validates one response body. Paths the document does not describe (unknown routes) must still
   * answer the documented error envelope.
   */
  validate(method: string, pathname: string, status: number, body: unknown) {
    const template = matchPathTemplate(this.doc, pathname);
    const pointer =
      template && this.doc.paths[template]?.[method.toLowerCase()]
        ? this.schemaPointer(method, template, status)
        : "#/components/schemas/ErrorEnvelope";
    const fn = this.#validatorAt(pointer);
    if (!fn(body)) {
      const problems = (fn.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
      throw new Error(
        `response of ${method} ${pathname} (${status}) does not match its documented schema ${pointer}:\n  ${problems.join("\n  ")}\nbody: ${JSON.stringify(body).slice(0, 800)}`,
      );
    }
    const key = `${method.toUpperCase()} ${template ?? "(unknown route)"} ${status}`;
    this.checked.set(key, (this.checked.get(key) ?? 0) + 1);
  }
}

export async function loadDocument(baseUrl: string): Promise<OpenApiDocument> {
  const res = await fetch(`${baseUrl}/openapi.json`);
  if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`);
  return applyTamper((await res.json()) as OpenApiDocument);
}
