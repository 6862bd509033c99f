import { decode, sign, verify } from "hono/jwt";
import type { Config } from "./config";
import { ApiError } from "./errors";
import { ID_PATTERN } from "./ids";
import type { AuthUser } from "./types";

/**
 * Access tokens: HS256 JWTs, 15 minutes, pinned algorithm, issuer and audience checked. Each
 * carries `sid`, the refresh-token family (session) it was issued for, so what it opens (a
 * realtime socket) can end with that session; and a `kid` header naming the key that signed it,
 * so a key rotation (README, "Rotating JWT_SECRET") never has to guess which key to try.
 */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const JWT_ISSUER = "credit-chat";
export const JWT_AUDIENCE = "credit-chat-api";
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
      aud: JWT_AUDIENCE,
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

/** Verifies a token; 401 `token_expired` when only its time is up, 401 `invalid_token` for anything else. */
export async function verifyAccessToken(config: Config, token: string, now = Date.now()): Promise<AuthUser> {
  let header: { kid?: unknown };
  try {
    header = decode(token).header as { kid?: unknown };
  } catch {
    throw invalid();
  }
  const secret = await secretFor(config, header.kid);
  if (secret === null) throw invalid("The access token was not signed by a key this server holds; sign in again");
  let payload: Record<string, unknown>;
  try {
    // Expiry is checked below, after the signature: a forged token must never be told "expired".
    payload = await verify(token, secret, { alg: ALGORITHM, iss: JWT_ISSUER, aud: JWT_AUDIENCE, exp: false });
  } catch {
    throw invalid();
  }
  const { sub, role, sid, exp } = payload;
  if (
    typeof sub !== "string" ||
    (role !== "user" && role !== "admin") ||
    typeof sid !== "string" ||
    !ID_PATTERN.test(sid) ||
    typeof exp !== "number"
  ) {
    throw invalid();
  }
  if (exp <= Math.floor(now / 1000)) throw new ApiError("token_expired", ["The access token has expired; refresh it"]);
  return { id: sub, role, sessionId: sid };
}
