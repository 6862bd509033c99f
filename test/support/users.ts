import { env } from "cloudflare:workers";
import { createDb } from "../../src/db/client";
import { users } from "../../src/db/schema";
import { getConfig } from "../../src/lib/config";
import { newId } from "../../src/lib/ids";
import { signAccessToken } from "../../src/lib/jwt";

let seeded = 0;

/**
 * A user written straight into D1 with a valid access token, for suites that are not about
 * registration. It has no password that works and no wallet until something opens one.
 */
export async function seedUser(
  options: { displayName?: string; email?: string; role?: "user" | "admin"; status?: "active" | "suspended" } = {},
) {
  seeded += 1;
  const id = newId();
  const displayName = options.displayName ?? `Seeded ${seeded}`;
  const email = (options.email ?? `seeded-${id}@example.com`).toLowerCase();
  const role = options.role ?? "user";
  await createDb(env.DB)
    .insert(users)
    .values({
      id,
      email,
      displayName,
      displayNameKey: displayName.toLowerCase(),
      passwordHash: "seeded$cannot-sign-in",
      role,
      status: options.status ?? "active",
      createdAt: Date.now(),
    });
  // A session of its own with no refresh token: only logout-all or suspension ends it.
  const sessionId = newId();
  const token = await signAccessToken(getConfig(env), { id, role, sessionId });
  return { id, email, displayName, role, token, sessionId };
}
