import { env } from "cloudflare:workers";
import { decode, sign } from "hono/jwt";
import { describe, expect, it } from "vitest";
import { getConfig, LOCAL_JWT_SECRET } from "../src/lib/config";
import { newId } from "../src/lib/ids";
import { JWT_ISSUER, jwtAudience, keyId, signAccessToken } from "../src/lib/jwt";
import { DEPLOYED_URLS } from "./support/deployment";
import { call, expectError } from "./support/http";
import { ip, PASSWORD, registerSession } from "./support/sessions";
import { seedUser } from "./support/users";
import { rowsOf } from "./support/wallets";

/** Signing-key rotation (README, "Rotating JWT_SECRET"): JWT_SECRET signs, JWT_SECRET_PREVIOUS still verifies. */
const OLD = "the-old-signing-key-of-at-least-32-bytes!";
const NEW = "the-new-signing-key-of-at-least-32-bytes!";

type Vars = { JWT_SECRET?: string; JWT_SECRET_PREVIOUS?: string; ENVIRONMENT?: string; ADMIN_EMAILS?: string };
const configWith = (vars: Vars) => getConfig({ ...env, ...DEPLOYED_URLS, ...vars } as Env);
const me = (token: string, vars: Vars) =>
  call("GET", "/api/v1/users/me", { token, vars: { ...DEPLOYED_URLS, ...vars } as Partial<Record<keyof Env, string>> });

const b64url = (text: string) => btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const claims = (sub: string) => {
  const iat = Math.floor(Date.now() / 1000);
  return { sub, role: "user", sid: newId(), iat, exp: iat + 900, iss: JWT_ISSUER, aud: jwtAudience("local") };
};

describe("access tokens name their key", () => {
  it("carry a kid derived from JWT_SECRET and the session (`sid`) they were issued for", async () => {
    const session = await registerSession();
    const { header, payload } = decode(session.accessToken);
    expect(header).toEqual({ alg: "HS256", typ: "JWT", kid: await keyId(getConfig(env).jwtSecret) });
    expect(header.kid).toMatch(/^[0-9a-f]{16}$/);
    const [row] = await rowsOf(session.user.id, "SELECT family_id FROM session_families");
    expect(payload.sid).toBe(row?.family_id);
    // Refreshing keeps the session.
    const refreshed = await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: session.refreshToken }, headers: ip() });
    expect(decode(refreshed.json.data.accessToken).payload.sid).toBe(payload.sid);
    expect(await keyId(OLD)).not.toBe(await keyId(NEW));
  });

  it("a token signed with the previous key verifies while JWT_SECRET_PREVIOUS is set, and not after", async () => {
    const user = await seedUser();
    const oldToken = await signAccessToken(configWith({ JWT_SECRET: OLD }), { id: user.id, role: "user", sessionId: newId() });
    expect((await me(oldToken, { JWT_SECRET: OLD })).status).toBe(200);
    // Rotation under way: the new key signs, the old one still verifies.
    expect((await me(oldToken, { JWT_SECRET: NEW, JWT_SECRET_PREVIOUS: OLD })).status).toBe(200);
    // Rotation finished: the previous key is gone (deleted, or left empty).
    expectError(await me(oldToken, { JWT_SECRET: NEW }), 401, "invalid_token");
    expectError(await me(oldToken, { JWT_SECRET: NEW, JWT_SECRET_PREVIOUS: "" }), 401, "invalid_token");
  });

  it("during a rotation new tokens are signed with the new key, which alone verifies them afterwards", async () => {
    const email = `rotate-${crypto.randomUUID()}@example.com`;
    await registerSession(email);
    const vars = { JWT_SECRET: NEW, JWT_SECRET_PREVIOUS: OLD };
    const login = await call("POST", "/api/v1/auth/login", { body: { email, password: PASSWORD }, headers: ip(), vars });
    expect(login.status).toBe(200);
    const token = login.json.data.accessToken;
    expect(decode(token).header.kid).toBe(await keyId(NEW));
    expect((await me(token, { JWT_SECRET: NEW })).status).toBe(200);
    // Never signed with the previous key: dropping back to it alone fails.
    expectError(await me(token, { JWT_SECRET: OLD }), 401, "invalid_token");
  });

  it("an unknown kid, a missing kid, or a known kid over another key is invalid_token", async () => {
    const user = await seedUser();
    const vars = { JWT_SECRET: NEW, JWT_SECRET_PREVIOUS: OLD };
    const key = (secret: string, kid?: string) => ({ kty: "oct", k: b64url(secret), alg: "HS256" as const, kid });
    // Signed with the right key, but naming a key the server does not hold.
    const unknownKid = await sign(claims(user.id), key(NEW, "0123456789abcdef"));
    const res = expectError(await me(unknownKid, vars), 401, "invalid_token");
    expect(res.errors.join(" ")).toMatch(/key/);
    // A third key with its own kid.
    const strange = "a-third-key-nobody-configured-32-bytes!!";
    expectError(await me(await sign(claims(user.id), key(strange, await keyId(strange))), vars), 401, "invalid_token");
    // No kid at all.
    expectError(await me(await sign(claims(user.id), NEW, "HS256"), vars), 401, "invalid_token");
    // The kid of the current key over a signature by another.
    expectError(await me(await sign(claims(user.id), key(strange, await keyId(NEW))), vars), 401, "invalid_token");
    // Control: the right key under its own kid passes.
    expect((await me(await sign(claims(user.id), key(NEW, await keyId(NEW))), vars)).status).toBe(200);
  });
});

describe("access tokens are bound to their environment", () => {
  it("a token minted under the dev config is refused by production, even with the same secret", async () => {
    const user = await seedUser();
    const shared = { JWT_SECRET: NEW, ADMIN_EMAILS: "" };
    const dev = { ...shared, ENVIRONMENT: "dev" };
    const production = { ...shared, ENVIRONMENT: "production" };
    const devToken = await signAccessToken(configWith(dev), { id: user.id, role: "user", sessionId: newId() });
    expect(decode(devToken).payload.aud).toBe("credit-chat-api:dev");
    // Control: dev itself accepts it.
    expect((await me(devToken, dev)).status).toBe(200);
    expectError(await me(devToken, production), 401, "invalid_token");
    // And the other way round.
    const productionToken = await signAccessToken(configWith(production), { id: user.id, role: "user", sessionId: newId() });
    expect((await me(productionToken, production)).status).toBe(200);
    expectError(await me(productionToken, dev), 401, "invalid_token");
  });
});

describe("JWT_SECRET_PREVIOUS outside local", () => {
  const production = (previous: string) =>
    call("GET", "/health", {
      vars: {
        ...DEPLOYED_URLS,
        ENVIRONMENT: "production",
        ADMIN_EMAILS: "",
        JWT_SECRET: NEW,
        JWT_SECRET_PREVIOUS: previous,
      } as Partial<Record<keyof Env, string>>,
    });

  it("obeys the JWT_SECRET rule: at least 32 bytes and not the local default, else the Worker refuses to serve", async () => {
    expectError(await production("short"), 500, "internal_error");
    expectError(await production(LOCAL_JWT_SECRET), 500, "internal_error");
    expect((await production(OLD)).status).toBe(200);
    // Empty is the same as unset.
    expect((await production("")).status).toBe(200);
  });

  it("locally any previous key is accepted", async () => {
    const res = await call("GET", "/health", { vars: { JWT_SECRET_PREVIOUS: "short" } as Partial<Record<keyof Env, string>> });
    expect(res.status).toBe(200);
  });
});
