import type { Config } from "./config";
import { fromBase64Url, toBase64Url } from "./encoding";

/**
 * Device tokens (README, "Sign-in limits"): what lets the owner of an account sign in while a
 * stranger's wrong guesses fill the per-email ceiling. A successful sign-in or registration
 * answers one; a later sign-in that sends it back for the same email is exempt from the per-email
 * ceiling (`RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE`) and counts its failures against the token instead,
 * at the per-address limit, so a stolen token buys no more guesses than one address has. The
 * OWASP "device cookie" pattern, carried in the body because API clients keep no cookies.
 *
 * Stateless: `dt1.<issued, unix s>.<nonce, 32 hex>.<HMAC-SHA256, base64url>` over the
 * environment, the email, the time and the nonce, keyed from JWT_SECRET (JWT_SECRET_PREVIOUS
 * still verifies during a rotation), so nothing is stored per device and a token from one
 * deployment or for another email means nothing. It proves only that its holder signed in to that
 * email recently; it authorizes nothing.
 */
export const DEVICE_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60;
const VERSION = "dt1";
const SHAPE = /^dt1\.(\d{1,12})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$/;

const keys = new Map<string, Promise<CryptoKey>>();

function keyOf(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    // Domain-separated from the JWT key made of the same secret.
    const material = new TextEncoder().encode(`credit-chat-device-token:${secret}`);
    key = crypto.subtle.importKey("raw", material, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.set(secret, key);
  }
  return key;
}

const signed = (config: Config, email: string, issued: number, nonce: string) =>
  new TextEncoder().encode(`${VERSION}|${config.environment}|${email}|${issued}|${nonce}`);

/** A device token for `email` (lower-cased), issued now. */
export async function issueDeviceToken(config: Config, email: string, now = Date.now()): Promise<string> {
  const issued = Math.floor(now / 1000);
  const nonce = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  const mac = await crypto.subtle.sign("HMAC", await keyOf(config.jwtSecret), signed(config, email, issued, nonce));
  return `${VERSION}.${issued}.${nonce}.${toBase64Url(new Uint8Array(mac))}`;
}

/**
 * The token's id (its nonce) when `token` is a live device token of `email` in this deployment;
 * null for anything else (malformed, expired, another email or deployment, a retired key), which
 * a sign-in then treats as no token at all.
 */
export async function verifiedDeviceId(config: Config, email: string, token: string, now = Date.now()): Promise<string | null> {
  const match = SHAPE.exec(token);
  const mac = match ? fromBase64Url(match[3] as string) : null;
  if (!match || !mac) return null;
  const issued = Number(match[1]);
  const age = Math.floor(now / 1000) - issued;
  if (age < -60 || age > DEVICE_TOKEN_TTL_SECONDS) return null;
  const nonce = match[2] as string;
  const message = signed(config, email, issued, nonce);
  for (const secret of [config.jwtSecret, config.jwtPreviousSecret]) {
    if (secret === null) continue;
    if (await crypto.subtle.verify("HMAC", await keyOf(secret), mac, message)) return nonce;
  }
  return null;
}
