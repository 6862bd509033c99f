import { fromBase64Url, toBase64Url } from "../lib/encoding";

/**
 * Password hashing: PBKDF2-SHA256 through WebCrypto, 100,000 iterations (the most the Workers
 * runtime allows), a random 16-byte salt per password, a 32-byte key. The parameters are stored
 * with the hash, `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>`, so they can be raised
 * later and old hashes still verify.
 */
export const PBKDF2_ITERATIONS = 100_000;
const SCHEME = "pbkdf2-sha256";
const SALT_BYTES = 16;
const KEY_BYTES = 32;

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, KEY_BYTES * 8);
  return new Uint8Array(bits);
}

export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const hash = await derive(password, salt, PBKDF2_ITERATIONS);
  return `${SCHEME}$${PBKDF2_ITERATIONS}$${toBase64Url(salt)}$${toBase64Url(hash)}`;
}

/**
 * A hash of a password nobody knows, so that signing in with an unknown email (or an account
 * whose stored hash is unusable) does the same PBKDF2 work as a wrong password.
 */
const DUMMY_HASH = `${SCHEME}$${PBKDF2_ITERATIONS}$AAAAAAAAAAAAAAAAAAAAAA$${"A".repeat(43)}`;

type ParsedHash = { iterations: number; salt: Uint8Array; hash: Uint8Array };

function parse(stored: string): ParsedHash | null {
  const [scheme, iterationsText, saltText, hashText, ...rest] = stored.split("$");
  if (scheme !== SCHEME || rest.length > 0 || !iterationsText || !saltText || !hashText) return null;
  const iterations = Number(iterationsText);
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > PBKDF2_ITERATIONS) return null;
  const salt = fromBase64Url(saltText);
  const hash = fromBase64Url(hashText);
  if (!salt || !hash || hash.byteLength !== KEY_BYTES) return null;
  return { iterations, salt, hash };
}

/**
 * Whether `password` matches `stored`, compared in constant time. `stored` undefined (no such
 * account) or unparsable still costs one full derivation against the dummy hash, and is false.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  const parsed = stored === undefined ? null : parse(stored);
  const target = parsed ?? (parse(DUMMY_HASH) as ParsedHash);
  const candidate = await derive(password, target.salt, target.iterations);
  const equal = crypto.subtle.timingSafeEqual(candidate, target.hash);
  return parsed !== null && equal;
}
