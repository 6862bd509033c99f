/**
 * `<smaller id>:<larger id>`: a direct chat's `chats.direct_key` in the directory (written by the
 * chat's outbox), shared by the services that name a pair's chat there. Its own module so no
 * service imports another for it.
 */
export function directKeyOf(a: string, b: string): string {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}
