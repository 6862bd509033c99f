/**
 * The id of the direct chat of two users, derived from the pair alone, so a send, a transfer's
 * message or "open my chat with X" reaches the pair's chat object with no directory lookup (a
 * pair's chat never changes). 24 lowercase hex like every id (API.md "IDs"): 4 bytes of Unix
 * seconds, the later of the two users' ids' own timestamps (the pair cannot have a chat before
 * its younger member existed, so ids stay roughly time-ordered), then the first 8 bytes of
 * SHA-256 over the sorted pair.
 *
 * Why it is safe: two different pairs share an id only if their 8-byte hashes collide (a chance of
 * about n²/2^65 among n pairs with the same 4-byte second: negligible at any scale the product
 * will see), and a group's id (lib/ids.ts: 5 bytes fixed per isolate and a 3-byte counter)
 * matches a pair's only by the same 2^-64 accident. Knowing the id grants nothing: the chat object
 * answers only its two members (404 `chat_not_found` for anyone else, as for any chat).
 */
export async function directChatIdOf(a: string, b: string): Promise<string> {
  const [first, second] = a < b ? [a, b] : [b, a];
  const seconds = Math.max(Number.parseInt(first.slice(0, 8), 16), Number.parseInt(second.slice(0, 8), 16));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${first}:${second}`)));
  const hash = Array.from(digest.subarray(0, 8), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return (seconds >>> 0).toString(16).padStart(8, "0") + hash;
}
