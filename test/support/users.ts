import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { createDb } from "../../src/db/client";
import { blocks, users } from "../../src/db/schema";
import { getConfig } from "../../src/lib/config";
import { newId } from "../../src/lib/ids";
import { signAccessToken } from "../../src/lib/jwt";
import { tellBlock, tellUserChats } from "../../src/services/chat-facts";

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

/**
 * Suspends (or reinstates) a user as the admin route does, minus the route: the D1 row, then
 * every chat object of the user is told (services/chat-facts.ts), so their next send is refused.
 */
export async function setSuspended(userId: string, suspended: boolean): Promise<void> {
  await createDb(env.DB)
    .update(users)
    .set({ status: suspended ? "suspended" : "active" })
    .where(eq(users.id, userId));
  await tellUserChats(env, userId, [{ kind: "suspended", userId, suspended }]);
}

/** A block as the route makes it: the D1 row, then the pair's direct chat object is told. */
export async function setBlocked(blockerId: string, blockedId: string, blocked: boolean): Promise<void> {
  const db = createDb(env.DB);
  if (blocked) await db.insert(blocks).values({ blockerId, blockedId, createdAt: Date.now() }).onConflictDoNothing();
  else await db.delete(blocks).where(and(eq(blocks.blockerId, blockerId), eq(blocks.blockedId, blockedId)));
  await tellBlock(env, db, blockerId, blockedId, blocked);
}
