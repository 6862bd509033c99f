/**
 * The client address a limit counts by, from `CF-Connecting-IP` (which Cloudflare sets; a client
 * cannot forge it there). IPv4 addresses count one by one; IPv6 addresses count by their /64,
 * because one subscriber is routinely given a whole /64 and could otherwise rotate through 2^64
 * addresses, each with a fresh budget. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) counts as
 * its IPv4 address. A request without the header (local tools, tests) or with something that is not
 * an address counts under what it sent, trimmed and bounded, or `unknown`; never an error.
 */
const MAX_KEY_LENGTH = 64;

export function clientAddress(connectingIp: string | undefined): string {
  const sent = connectingIp?.trim().toLowerCase() ?? "";
  if (sent === "") return "unknown";
  if (!sent.includes(":")) return sent.slice(0, MAX_KEY_LENGTH);
  return ipv6Prefix64(sent) ?? sent.slice(0, MAX_KEY_LENGTH);
}

/** `2001:db8:1:2::/64` for any address in that /64; the IPv4 address of a mapped one; null when `address` is not IPv6. */
function ipv6Prefix64(address: string): string | null {
  const withoutZone = address.split("%")[0] ?? "";
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(withoutZone);
  if (mapped?.[1]) return mapped[1];
  const groups = expandIpv6(withoutZone);
  if (!groups) return null;
  return `${groups.slice(0, 4).join(":")}::/64`;
}

/** The eight groups of an IPv6 address, each without leading zeros; null when it is not one. */
function expandIpv6(address: string): string[] | null {
  // A trailing dotted IPv4 part (e.g. `64:ff9b::192.0.2.1`) is two groups.
  const dotted = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  let text = address;
  if (dotted) {
    const octets = dotted.slice(2, 6).map(Number);
    if (octets.some((octet) => octet > 255)) return null;
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const split = (half: string | undefined) => (half ? half.split(":") : []);
  const head = split(halves[0]);
  const tail = split(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 1 ? 0 : missing).fill("0"), ...tail];
  if (!groups.every((group) => /^[0-9a-f]{1,4}$/.test(group))) return null;
  return groups.map((group) => Number.parseInt(group, 16).toString(16));
}
