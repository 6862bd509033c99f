import { sign, verify } from "hono/jwt";
import type { Config } from "./config";
import { ApiError } from "./errors";
import type { AuthUser } from "./types";

/** Access tokens: HS256 JWTs, 15 minutes, pinned algorithm, issuer and audience checked. */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const JWT_ISSUER = "credit-chat";
export const JWT_AUDIENCE = "credit-chat-api";
const ALGORITHM = "HS256" as const;

/**
 * The HMAC key imported once per secret: given a string, hono/jwt imports it on every sign and
 * verify, a measurable part of each authenticated request (bench/README.md). The key itself is
 * kept, not the import's promise, so no request ever awaits a promise another request created.
 */
const keys = new Map<string, CryptoKey>();
async function hmacKey(secret: string): Promise<CryptoKey> {
  const cached = keys.get(secret);
  if (cached) return cached;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
  keys.set(secret, key);
  return key;
}

export async function signAccessToken(config: Config, user: AuthUser, now = Date.now()): Promise<string> {
  const iat = Math.floor(now / 1000);
  return sign(
    {
      sub: user.id,
      role: user.role,
      iat,
      exp: iat + ACCESS_TOKEN_TTL_SECONDS,
      iss: JWT_ISSUER,
      aud: JWT_AUDIENCE,
      jti: crypto.randomUUID(),
    },
    await hmacKey(config.jwtSecret),
    ALGORITHM,
  );
}

/** Verifies a token; 401 `token_expired` when only its time is up, 401 `invalid_token` for anything else. */
export async function verifyAccessToken(config: Config, token: string, now = Date.now()): Promise<AuthUser> {
  let payload: Record<string, unknown>;
  try {
    // Expiry is checked below, after the signature: a forged token must never be told "expired".
    payload = await verify(token, await hmacKey(config.jwtSecret), {
      alg: ALGORITHM,
      iss: JWT_ISSUER,
      aud: JWT_AUDIENCE,
      exp: false,
    });
  } catch {
    throw new ApiError("invalid_token", ["The access token is not valid"]);
  }
  const { sub, role, exp } = payload;
  if (typeof sub !== "string" || (role !== "user" && role !== "admin") || typeof exp !== "number") {
    throw new ApiError("invalid_token", ["The access token is not valid"]);
  }
  if (exp <= Math.floor(now / 1000)) throw new ApiError("token_expired", ["The access token has expired; refresh it"]);
  return { id: sub, role };
}
