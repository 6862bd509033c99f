/**
 * The benchmark's denominator (ARCHITECTURE.md §7): a bare Worker, no framework and no middleware,
 * answering a small JSON object. bench/world.ts serves it from the same Miniflare process as the
 * product (the route `/__bare` on any host), so both pay the same entry hop and share the same machine moment.
 */
export default {
  fetch() {
    return new Response('{"status":"ok"}', { headers: { "content-type": "application/json" } });
  },
};
