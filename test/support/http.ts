import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { app } from "../../src/app";

/** Calls the Worker's own fetch handler, as a client over HTTP would. */
export async function call(
  method: string,
  path: string,
  options: {
    body?: unknown;
    rawBody?: BodyInit;
    token?: string;
    headers?: Record<string, string>;
    /** Vars to override for this request (e.g. a low rate limit); the bindings stay the real ones. */
    vars?: Partial<Record<keyof Env, string>>;
    /** Bindings to replace for this request (e.g. a D1 that counts its round trips). */
    bindings?: Partial<Env>;
  } = {},
) {
  const headers: Record<string, string> = { ...options.headers };
  let body: BodyInit | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] ??= "application/json";
  }
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  const request = new Request(`http://localhost${path}`, { method, headers, body });
  let response: Response;
  if (options.vars || options.bindings) {
    const ctx = createExecutionContext();
    response = await app.fetch(request, { ...env, ...options.vars, ...options.bindings }, ctx);
    await waitOnExecutionContext(ctx);
  } else {
    response = await exports.default.fetch(request);
  }
  const text = await response.text();
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the API answered
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** Asserts the error envelope of API.md §1 and returns it. */
export function expectError(
  result: Awaited<ReturnType<typeof call>>,
  status: number,
  code: string,
): { errors: string[]; code: string } {
  const { json } = result;
  if (result.status !== status || json?.code !== code) {
    throw new Error(`expected ${status} ${code}, got ${result.status} ${result.text.slice(0, 500)}`);
  }
  if (json.isSuccess !== false || json.statusCode !== status || json.data !== null || !Array.isArray(json.errors)) {
    throw new Error(`not an error envelope: ${result.text.slice(0, 500)}`);
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(json.timestamp)) throw new Error(`bad timestamp ${json.timestamp}`);
  return json;
}
