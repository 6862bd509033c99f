// Secrets are not in wrangler.toml, so `wrangler types` cannot see them; declared here once.
interface SecretBindings {
  /** Set with `wrangler secret put JWT_SECRET`; optional locally (a named insecure default applies). */
  JWT_SECRET?: string;
}
interface Env extends SecretBindings {}
declare namespace Cloudflare {
  interface Env extends SecretBindings {}
}
