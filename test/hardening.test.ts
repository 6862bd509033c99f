import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, nestsDeeperThan } from "../src/middlewares/body-guard";
import { docsContentSecurityPolicy } from "../src/routes/docs/docs.index";
import { NO_BIDI_CONTROLS, NO_CONTROL_CHARACTERS } from "../src/schemas/text";
import { DEPLOYED_URLS } from "./support/deployment";
import { call, expectError } from "./support/http";
import { seedUser } from "./support/users";
import { NO_RATE_LIMIT, seedWalletUser, transfer } from "./support/wallets";

/** Issue 23, "Ready for the open internet": the small ones. */

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("deeply nested JSON bodies", () => {
  it("a body nested 10,000 deep is 400 validation_failed, not 500, even where the key's fingerprint reads the raw body", async () => {
    const user = await seedUser();
    const other = await seedUser();
    const chat = await call("POST", "/api/v1/chats", { token: user.token, body: { type: "direct", memberId: other.id } });
    // Unknown members pass validation (they are dropped), but the Idempotency-Key's fingerprint
    // is taken over the body as sent: the nesting hides there.
    const res = await call("POST", "/api/v2/messages", {
      token: user.token,
      headers: { "Content-Type": "application/json", "Idempotency-Key": `deep-${crypto.randomUUID()}` },
      rawBody: `{"chatId":"${chat.json.data.id}","content":"hi","extra":${nested(10_000)}}`,
      vars: NO_RATE_LIMIT,
    });
    const body = expectError(res, 400, "validation_failed");
    expect(body.errors).toContain(`body: objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels`);
    // Nothing was sent.
    const list = await call("GET", `/api/v1/messages/chat/${chat.json.data.id}`, { token: user.token });
    expect(list.json.data.items).toEqual([]);
    // Before any auth too: an anonymous route answers the same.
    const anonymous = await call("POST", "/api/v1/auth/login", {
      headers: { "Content-Type": "application/json" },
      rawBody: nested(10_000),
    });
    expectError(anonymous, 400, "validation_failed");
  });

  it("counts only brackets outside strings, in one pass, up to the limit exactly", () => {
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
    expect(nestsDeeperThan(`{"a":"${"[".repeat(500)}"}`, MAX_JSON_DEPTH)).toBe(false);
    expect(nestsDeeperThan(`{"a":"\\"${"{".repeat(500)}"}`, MAX_JSON_DEPTH)).toBe(false);
    expect(nestsDeeperThan(`{"a":"\\\\",${"{".repeat(65)}`, MAX_JSON_DEPTH)).toBe(true);
    expect(nestsDeeperThan(nested(32_000), MAX_JSON_DEPTH)).toBe(true);
  });

  it("a body at the limit still reaches validation (its own 400)", async () => {
    const res = await call("POST", "/api/v1/auth/login", {
      headers: { "Content-Type": "application/json" },
      rawBody: `{"email":${nested(MAX_JSON_DEPTH - 1)},"password":"x"}`,
    });
    const body = expectError(res, 400, "validation_failed");
    expect(body.errors.some((line) => line.startsWith("email:"))).toBe(true);
  });
});

describe("bidirectional override characters", () => {
  const BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"];

  it("the pattern refuses exactly U+202A–U+202E and U+2066–U+2069", () => {
    for (let cp = 0x2000; cp <= 0x2100; cp++) {
      const refused = (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
      expect(NO_BIDI_CONTROLS.test(`a${String.fromCodePoint(cp)}b`), `U+${cp.toString(16)}`).toBe(!refused);
    }
    expect(NO_BIDI_CONTROLS.flags).toBe("");
    expect(NO_BIDI_CONTROLS.source).not.toContain("\\p");
  });

  it("the control-character pattern refuses every Cc and BMP Cf character but the joiners and direction marks, flag-free", () => {
    // The BMP's Cc and Cf characters (Unicode 15.1), from the engine's own tables; and the line and
    // paragraph separators, a line break by another name.
    const formatOrControl = /^[\p{Cc}\p{Cf}\u2028\u2029]$/u;
    const kept = new Set([0x200c, 0x200d, 0x200e, 0x200f, 0x061c]);
    for (let cp = 0; cp <= 0xffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const ch = String.fromCodePoint(cp);
      const refused = formatOrControl.test(ch) && !kept.has(cp);
      expect(NO_CONTROL_CHARACTERS.test(`a${ch}b`), `U+${cp.toString(16)}`).toBe(!refused);
    }
    expect(NO_CONTROL_CHARACTERS.flags).toBe("");
    expect(NO_CONTROL_CHARACTERS.source).not.toContain("\\p");
  });

  it("group titles, transfer notes and display names holding one are 400 validation_failed", async () => {
    const owner = await seedWalletUser();
    const other = await seedWalletUser();
    for (const ch of BIDI) {
      const title = await call("POST", "/api/v1/chats", {
        token: owner.token,
        body: { type: "group", title: `Trip ${ch}gnp.exe`, memberIds: [other.id] },
      });
      expect(expectError(title, 400, "validation_failed").errors.join("\n")).toContain("title:");

      const note = await transfer(owner.token, { recipientId: other.id, amount: 1, note: `lunch${ch}` });
      expect(expectError(note, 400, "validation_failed").errors.join("\n")).toContain("note:");

      const register = await call("POST", "/api/v1/auth/register", {
        body: { email: `bidi-${crypto.randomUUID()}@example.com`, password: "correct horse battery", displayName: `Eve${ch}` },
        headers: { "CF-Connecting-IP": `10.77.${Math.floor(Math.random() * 250)}.1` },
      });
      expect(expectError(register, 400, "validation_failed").errors.join("\n")).toContain("displayName:");
    }
    // Nothing moved: the refused notes sent nothing.
    const ok = await transfer(owner.token, { recipientId: other.id, amount: 1, note: "lunch ✓ مرحبا" });
    expect(ok.status).toBe(201);
    expect(ok.json.data.senderBalance).toBe(99);
  });

  it("control characters in group titles, display names, transfer notes and grant reasons are 400 validation_failed", async () => {
    const owner = await seedWalletUser();
    const other = await seedWalletUser();
    const admin = await seedUser({ role: "admin" });
    for (const ch of ["\u0000", "\n", "\t", "\u001b", "\u0085", "\u00ad", "\u200b", "\ufeff", "\u2028", "\u2061"]) {
      const title = await call("POST", "/api/v1/chats", {
        token: owner.token,
        body: { type: "group", title: `Trip${ch}fund`, memberIds: [other.id] },
      });
      expect(expectError(title, 400, "validation_failed").errors.join("\n")).toContain("title:");
      const note = await transfer(owner.token, { recipientId: other.id, amount: 1, note: `lunch${ch}x` });
      expect(expectError(note, 400, "validation_failed").errors.join("\n")).toContain("note:");
      const register = await call("POST", "/api/v1/auth/register", {
        body: { email: `cc-${crypto.randomUUID()}@example.com`, password: "correct horse battery", displayName: `Eve${ch}x` },
        headers: { "CF-Connecting-IP": `10.78.${Math.floor(Math.random() * 250)}.1` },
      });
      expect(expectError(register, 400, "validation_failed").errors.join("\n")).toContain("displayName:");
      const grant = await call("POST", `/api/v1/admin/wallets/${other.id}/grants`, {
        token: admin.token,
        body: { amount: 1, reason: `bonus${ch}x` },
      });
      expect(expectError(grant, 400, "validation_failed").errors.join("\n")).toContain("reason:");
    }
    // Nothing moved; ordinary right-to-left names, titles, notes and reasons (with their marks) still work.
    const group = await call("POST", "/api/v1/chats", {
      token: owner.token,
      body: { type: "group", title: "رحلة نهاية الأسبوع \u200f(2026)", memberIds: [other.id] },
    });
    expect(group.status).toBe(201);
    const ok = await transfer(owner.token, { recipientId: other.id, amount: 1, note: "ארוחת צהריים 🍕" });
    expect(ok.status).toBe(201);
    expect(ok.json.data.senderBalance).toBe(99);
    const grant = await call("POST", `/api/v1/admin/wallets/${other.id}/grants`, {
      token: admin.token,
      body: { amount: 1, reason: "مكافأة" },
    });
    expect(grant.status).toBe(201);
    const register = await call("POST", "/api/v1/auth/register", {
      body: { email: `rtl-${crypto.randomUUID()}@example.com`, password: "correct horse battery", displayName: "سارة كوهين" },
      headers: { "CF-Connecting-IP": `10.79.${Math.floor(Math.random() * 250)}.1` },
    });
    expect(register.status).toBe(201);
  });

  it("right-to-left message content keeps working, sent and read back as written", async () => {
    const alice = await seedWalletUser();
    const bob = await seedWalletUser();
    const content = "مرحبا بك! שלום עולם\u200f — mixed with English 123";
    const sent = await call("POST", "/api/v1/messages", {
      token: alice.token,
      body: { recipientId: bob.id, content },
      vars: NO_RATE_LIMIT,
    });
    expect(sent.status).toBe(201);
    expect(sent.json.data.content).toBe(content);
    const read = await call("GET", `/api/v1/messages/chat/${sent.json.data.chatId}`, { token: bob.token });
    expect(read.json.data.items[0].content).toBe(content);
  });

  it("the document publishes the same patterns, flag-free", async () => {
    const doc = (await call("GET", "/openapi.json")).json;
    const schemas = doc.components.schemas;
    const patterns = [
      schemas.RegisterRequest.properties.displayName.pattern,
      schemas.CreditTransferRequest.properties.note.anyOf?.find((s: { type?: string }) => s.type === "string")?.pattern ??
        schemas.CreditTransferRequest.properties.note.pattern,
      schemas.CreateGroupChat.properties.title.pattern,
    ];
    patterns.push(schemas.GrantRequest.properties.reason.pattern);
    for (const pattern of patterns) {
      expect(pattern).toBe(NO_CONTROL_CHARACTERS.source);
      expect(pattern).toContain("\\u202a-\\u202e\\u2066-\\u2069");
      const regex = new RegExp(pattern);
      for (const ch of BIDI) expect(regex.test(`x${ch}`)).toBe(false);
      expect(regex.test("Zoë 🚀")).toBe(true);
    }
  });
});

describe("/docs Content-Security-Policy", () => {
  it("allows only its own scripts and styles (no inline script), data: images, its servers, and no framing", async () => {
    const page = await call("GET", "/docs");
    expect(page.status).toBe(200);
    const csp = page.headers.get("Content-Security-Policy") ?? "";
    const directives = Object.fromEntries(
      csp.split(";").map((part) => {
        const [name, ...values] = part.trim().split(/\s+/);
        return [name, values];
      }),
    );
    expect(directives["default-src"]).toEqual(["'none'"]);
    expect(directives["script-src"]).toEqual(["'self'"]);
    expect(directives["style-src"]).toEqual(["'self'"]);
    expect(directives["frame-ancestors"]).toEqual(["'none'"]);
    expect(directives["connect-src"]).toEqual([
      "'self'",
      new URL(String(env.DEV_BASE_URL)).origin,
      new URL(String(env.PRODUCTION_BASE_URL)).origin,
    ]);
    // 'self' scripts only: the page has no inline script left to allow.
    expect(page.text).not.toMatch(/<script>(?!<\/script>)|<script(?![^>]*\bsrc=)[^>]*>/);
    const script = await call("GET", "/docs/playground.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("Content-Type")).toContain("javascript");
    expect(script.text).toContain('preauthorizeApiKey("JWT-auth", token)');
    expect(docsContentSecurityPolicy({ devBaseUrl: "https://a.test/x", productionBaseUrl: "https://a.test/y" })).toContain(
      "connect-src 'self' https://a.test;",
    );
  });
});

describe("Strict-Transport-Security", () => {
  const production = {
    ...DEPLOYED_URLS,
    ENVIRONMENT: "production",
    JWT_SECRET: "p".repeat(48),
    SIGNUP_CREDITS: "0",
    ADMIN_EMAILS: "",
  };

  it("production answers with it (successes, errors and preflights alike); local and dev do not", async () => {
    for (const [method, path] of [
      ["GET", "/health"],
      ["GET", "/nowhere"],
      ["OPTIONS", "/health"],
    ] as const) {
      const res = await call(method, path, { vars: production });
      expect(res.headers.get("Strict-Transport-Security"), `${method} ${path}`).toBe("max-age=31536000");
    }
    expect((await call("GET", "/health")).headers.get("Strict-Transport-Security")).toBeNull();
    const dev = await call("GET", "/health", { vars: { ...production, ENVIRONMENT: "dev" } });
    expect(dev.status).toBe(200);
    expect(dev.headers.get("Strict-Transport-Security")).toBeNull();
  });
});
