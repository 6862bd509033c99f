import { sign } from "hono/jwt";
import { decodeBase64Url } from "hono/utils/encode";
import type { Config } from "./config";
import { ApiError } from "./errors";
import { ID_PATTERN } from "./ids";
import type { AuthUser } from "./types";

/**
 * Access tokens: HS256 JWTs, 15 minutes, pinned algorithm, issuer and audience (the environment) checked. Each
 * carries `sid`, the refresh-token family (session) it was issued for, so what it opens (a
 * realtime socket) can end with that session; and a `kid` header naming the key that signed it,
 * so a key rotation (README, "Rotating JWT_SECRET") never has to guess which key to try.
 */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const JWT_ISSUER = "credit-chat";

/**
 * The audience names the environment (`credit-chat-api:production`), so a token minted by one
 * deployment is refused by every other even if they were ever given the same secret by mistake.
 */
export const jwtAudience = (environment: Config["environment"]) => `credit-chat-api:${environment}`;
const ALGORITHM = "HS256" as const;

const kids = new Map<string, Promise<string>>();

/**
 * The `kid` of a secret: derived from it (a domain-separated SHA-256, 16 hex characters), so an
 * operator rotating keys only moves secrets and never names keys; it reveals nothing usable
 * about a secret of 32 random bytes.
 */
export function keyId(secret: string): Promise<string> {
  let kid = kids.get(secret);
  if (!kid) {
    kid = crypto.subtle
      .digest("SHA-256", new TextEncoder().encode(`credit-chat-jwt-kid:${secret}`))
      .then((digest) => Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join(""));
    kids.set(secret, kid);
  }
  return kid;
}

const toBase64Url = (text: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(text)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

/** Signs with `JWT_SECRET` (never the previous key), its `kid` in the header. */
export async function signAccessToken(config: Config, user: AuthUser, now = Date.now()): Promise<string> {
  const iat = Math.floor(now / 1000);
  // As an `oct` JWK so that hono/jwt writes the kid into the header; the key bytes are the secret's UTF-8, as before.
  const key = { kty: "oct", k: toBase64Url(config.jwtSecret), alg: ALGORITHM, kid: await keyId(config.jwtSecret) };
  return sign(
    {
      sub: user.id,
      role: user.role,
      sid: user.sessionId,
      iat,
      exp: iat + ACCESS_TOKEN_TTL_SECONDS,
      iss: JWT_ISSUER,
      aud: jwtAudience(config.environment),
      jti: crypto.randomUUID(),
    },
    key,
  );
}

const invalid = (detail = "The access token is not valid") => new ApiError("invalid_token", [detail]);

/** The secret whose kid the token names: JWT_SECRET, or JWT_SECRET_PREVIOUS while it is set. */
async function secretFor(config: Config, kid: unknown): Promise<string | null> {
  if (typeof kid !== "string") return null;
  if (kid === (await keyId(config.jwtSecret))) return config.jwtSecret;
  if (config.jwtPreviousSecret !== null && kid === (await keyId(config.jwtPreviousSecret))) return config.jwtPreviousSecret;
  return null;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const verifyKeys = new Map<string, Promise<CryptoKey>>();

/**
 * The HMAC key of a secret, imported once per secret (hono/jwt's `verify` imports it again on
 * every call, which was a tenth of an authenticated read's thread time: bench/README.md).
 */
function verifyKey(secret: string): Promise<CryptoKey> {
  let key = verifyKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    // A failed import is not kept: the next request tries again.
    key.catch(() => verifyKeys.delete(secret));
    verifyKeys.set(secret, key);
  }
  return key;
}

const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** A JSON object from a base64url segment, or null when the segment is not one. */
function decodeSegment(segment: string): Record<string, unknown> | null {
  if (!BASE64URL.test(segment)) return null;
  try {
    const value: unknown = JSON.parse(strictUtf8.decode(decodeBase64Url(segment)));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** `typ`, when present, must say JWT (RFC 7519 §5.1: case-insensitive, `application/` optional). */
const isJwtType = (typ: unknown) =>
  typ === undefined || (typeof typ === "string" && typ.toLowerCase().replace(/^application\//, "") === "jwt");

/** A NumericDate claim that, when present, must be at or before `nowSeconds` (`nbf`, `iat`). */
const notAfter = (value: unknown, nowSeconds: number) =>
  value === undefined || (typeof value === "number" && Number.isFinite(value) && value <= nowSeconds);

/**
 * Verifies a token; 401 `token_expired` when only its time is up, 401 `invalid_token` for anything
 * else. What hono/jwt's `verify` checks, in one pass over the token: the header (HS256 only, `typ`
 * JWT if any, no `crit`), the signature under the key its `kid` names, then the claims: `iss`,
 * `aud`, `nbf` and `iat` not in the future, and the product's own (`sub`, `role`, `sid`, `exp`).
 */
export async function verifyAccessToken(config: Config, token: string, now = Date.now()): Promise<AuthUser> {
  const parts = token.split(".");
  if (parts.length !== 3) throw invalid();
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];
  const header = decodeSegment(encodedHeader);
  const payload = decodeSegment(encodedPayload);
  if (header === null || payload === null || !BASE64URL.test(encodedSignature)) throw invalid();
  if (header.alg !== ALGORITHM || !isJwtType(header.typ) || "crit" in header) throw invalid();
  const secret = await secretFor(config, header.kid);
  if (secret === null) throw invalid("The access token was not signed by a key this server holds; sign in again");
  let signature: Uint8Array;
  try {
    signature = decodeBase64Url(encodedSignature);
  } catch {
    throw invalid();
  }
  const signed = await crypto.subtle.verify(
    "HMAC",
    await verifyKey(secret),
    signature,
    utf8.encode(`${encodedHeader}.${encodedPayload}`),
  );
  // Every claim, expiry included, is read only once the signature holds: a forged token must never be told "expired".
  if (!signed) throw invalid();
  const nowSeconds = Math.floor(now / 1000);
  const { sub, role, sid, exp, iss, aud, nbf, iat } = payload;
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (
    iss !== JWT_ISSUER ||
    !audiences.includes(jwtAudience(config.environment)) ||
    !notAfter(nbf, nowSeconds) ||
    !notAfter(iat, nowSeconds) ||
    typeof sub !== "string" ||
    (role !== "user" && role !== "admin") ||
    typeof sid !== "string" ||
    !ID_PATTERN.test(sid) ||
    typeof exp !== "number" ||
    !Number.isFinite(exp)
  ) {
    throw invalid();
  }
  if (exp <= nowSeconds) throw new ApiError("token_expired", ["The access token has expired; refresh it"]);
  return { id: sub, role, sessionId: sid };
}
