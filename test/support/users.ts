import { env } from "cloudflare:workers";
import { createDb } from "../../src/db/client";
import { users } from "../../src/db/schema";
import { walletStub } from "../../src/durable-objects/wallet/wallet-stub";
import { getConfig } from "../../src/lib/config";
import { newId } from "../../src/lib/ids";
import { signAccessToken } from "../../src/lib/jwt";

let seeded = 0;

/**
 * A user written straight into D1 with a valid access token, for suites that are not about
 * registration. It has no password that works and no wallet until something opens one; its
 * account (the owner of its status, role and blocks) is opened, as registration opens it.
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
  const status = options.status ?? "active";
  await walletStub(env, id).openAccount(id, { role, status: "active" });
  if (status === "suspended") await walletStub(env, id).setStatus(id, "suspended", null, null);
  // A session of its own with no refresh token: only logout-all or suspension ends it.
  const sessionId = newId();
  const token = await signAccessToken(getConfig(env), { id, role, sessionId });
  return { id, email, displayName, role, token, sessionId };
}

/**
 * Suspends (or reinstates) a user as the admin route does, minus the route and the audit: the
 * user's object takes the change and tells every chat of the user before answering.
 */
export async function setSuspended(userId: string, suspended: boolean): Promise<void> {
  await walletStub(env, userId).setStatus(userId, suspended ? "suspended" : "active", null, null);
}

/** A block as the route makes it: the blocker's object, which tells the pair's direct chat and the D1 index. */
export async function setBlocked(blockerId: string, blockedId: string, blocked: boolean): Promise<void> {
  await walletStub(env, blockerId).setBlock(blockerId, blockedId, blocked);
}

/**
 * Makes or unmakes an admin in the account's owner, as the operator command does (through its
 * Workflow): the owner writes the audit row and the D1 index behind itself. Null: no account.
 */
export function setOwnerRole(userId: string, role: "user" | "admin") {
  return walletStub(env, userId).setRole(userId, role, { operator: "test-suite", runId: `test-${crypto.randomUUID()}` });
}
