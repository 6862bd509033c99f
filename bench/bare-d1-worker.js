/**
 * The platform's floor for D1 paths: a bare Worker (no framework, no auth, no checks) making the
 * one D1 round trip a product request cannot avoid, on the product's own D1 database. Its ratio
 * to the bare Worker bounds what a product route with that round trip can reach on this machine:
 * `GET /__bare-d1/read?id=<user id>`: one row by primary key (what `GET /users/me` reads).
 * A probe, not a goal (bench/README.md).
 */
const json = (value) => new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/__bare-d1/read") {
      const row = await env.DB.prepare("SELECT * FROM users WHERE id = ?").bind(url.searchParams.get("id")).first();
      return json({ id: row?.id ?? null });
    }
    return json({ error: "not found" });
  },
};
