import { decodeBase64Url, encodeBase64Url } from "hono/utils/encode";

/**
 * Unpadded base64url (RFC 4648 §5) on Hono's encoders: what cursors, password hashes and tokens
 * put in URLs and stored strings.
 */
export const toBase64Url = (bytes: Uint8Array): string => encodeBase64Url(bytes.slice().buffer).replace(/=+$/, "");

/** The bytes of an unpadded base64url string, or null when it is not one. */
export function fromBase64Url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  try {
    return decodeBase64Url(text);
  } catch {
    return null;
  }
}
