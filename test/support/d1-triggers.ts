import { env } from "cloudflare:workers";

/**
 * Runs `fn` with D1 triggers installed (`name → definition after CREATE TRIGGER <name>`): a fault
 * or a rewrite injected in SQL, where the code under test cannot be reached. They are dropped
 * afterwards whatever `fn` does, so no other test sees them.
 */
export async function withTriggers<T>(triggers: Record<string, string>, fn: () => T | Promise<T>): Promise<T> {
  const names = Object.keys(triggers);
  await env.DB.batch(names.map((name) => env.DB.prepare(`CREATE TRIGGER ${name} ${triggers[name]}`)));
  try {
    return await fn();
  } finally {
    await env.DB.batch(names.map((name) => env.DB.prepare(`DROP TRIGGER ${name}`)));
  }
}
