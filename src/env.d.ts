// Secrets are not in wrangler.toml, so `wrangler types` cannot see them; declared here once.
declare namespace Cloudflare {
  interface Env {
    /** Set with `wrangler secret put JWT_SECRET`; optional locally (a named insecure default applies). */
    JWT_SECRET?: string;
  }
}
