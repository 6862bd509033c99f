import { afterEach, describe, expect, it, vi } from "vitest";
import { errorFields, log, scrubMessage } from "../src/lib/log";
import { withTriggers } from "./support/d1-triggers";
import { call, expectError } from "./support/http";

/**
 * Issue 23: one structured logger (src/lib/log.ts), and logs that keep secrets: a failed D1
 * statement is logged without the values it bound (Drizzle and D1 put them in their messages).
 */

/** Every console line written while the test runs; `methods` says which console method wrote each. */
function captureConsole(methods: string[] = []): string[] {
  const lines: string[] = [];
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      methods.push(method);
      lines.push(args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg))).join(" "));
    });
  }
  return lines;
}

const parsed = (lines: string[]) =>
  lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });

afterEach(() => vi.restoreAllMocks());

describe("a failed D1 write is logged without its parameters", () => {
  it("a registration whose users insert fails: 500 with the request id, whose log line names it and holds no email, password or parameters", async () => {
    const email = `leak-${crypto.randomUUID()}@example.com`;
    const password = `Pw-${crypto.randomUUID()}`;
    const displayName = `Leaky ${crypto.randomUUID().slice(0, 8)}`;
    const requestId = `log-test-${crypto.randomUUID()}`;
    const lines = captureConsole();
    const res = await withTriggers(
      {
        [`fail_register_${requestId.replace(/-/g, "_")}`]: `BEFORE INSERT ON users WHEN NEW.email = '${email}' BEGIN SELECT RAISE(ABORT, 'injected: users down'); END`,
      },
      () =>
        call("POST", "/api/v1/auth/register", {
          body: { email, password, displayName },
          headers: { "X-Request-Id": requestId },
        }),
    );
    const body = expectError(res, 500, "internal_error");
    // The server's own id answers (X-Request-Id); the client's is logged beside it.
    const serverRequestId = res.headers.get("X-Request-Id");
    expect(serverRequestId).not.toBe(requestId);
    expect(body.errors).toContain(`Request id ${serverRequestId}`);
    expect(res.text).not.toContain(email);

    const logged = lines.join("\n");
    expect(logged).not.toContain(email);
    expect(logged).not.toContain(password);
    expect(logged).not.toContain(displayName);
    expect(logged).not.toContain("params:");
    const line = parsed(lines).find((entry) => entry.clientRequestId === requestId);
    expect(line).toMatchObject({
      level: "error",
      event: "request_failed",
      requestId: serverRequestId,
      clientRequestId: requestId,
      method: "POST",
    });
    // Still says what failed: the statement (placeholders only) and D1's reason.
    expect(JSON.stringify(line)).toContain("insert into");
    expect(JSON.stringify(line)).toContain("injected: users down");
  });
});

describe("lib/log", () => {
  it("writes one JSON line per event on the console method of its level, with no request id outside a request", () => {
    const methods: string[] = [];
    const lines = captureConsole(methods);
    log.info("test.info", { n: 1 });
    log.warn("test.warn");
    log.error("test.error", { userId: "64d15f9e2e6c8f4d5a123456" });
    expect(methods).toEqual(["log", "warn", "error"]);
    expect(parsed(lines)).toEqual([
      { level: "info", event: "test.info", n: 1 },
      { level: "warn", event: "test.warn" },
      { level: "error", event: "test.error", userId: "64d15f9e2e6c8f4d5a123456" },
    ]);
  });

  it("an Error field becomes name, scrubbed message, scrubbed cause chain and stack frames only", () => {
    const d1 = new Error("D1_TYPE_ERROR: Type 'object' not supported for value 'secret@example.com'");
    const drizzle = new Error(
      "Failed query: insert into users (email, password_hash) values (?, ?)\nparams: secret@example.com,pbkdf2$hash",
      {
        cause: d1,
      },
    );
    const fields = errorFields(drizzle) as Record<string, any>;
    expect(fields.message).toBe("Failed query: insert into users (email, password_hash) values (?, ?)");
    expect(fields.cause.message).toBe("D1_TYPE_ERROR: Type 'object' not supported for value <redacted>");
    expect(JSON.stringify(fields)).not.toContain("secret@example.com");
    expect(JSON.stringify(fields)).not.toContain("pbkdf2$hash");
    expect(fields.stack).toMatch(/^\s+at /);
    expect(scrubMessage("plain message")).toBe("plain message");

    const lines = captureConsole();
    log.error("test.failure", { error: drizzle });
    expect(lines.join("\n")).not.toContain("secret@example.com");
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    log.error("test.cycle", { cyclic });
    expect(parsed(lines).at(-1)).toEqual({ level: "error", event: "test.cycle", unserializable: ["cyclic"] });
  });
});
