import { and, asc, eq, gt, gte, lt, not, or, type SQL, sql } from "drizzle-orm";
import { z } from "zod";
import type { Database } from "../db/client";
import { type Param, preparedPerDatabase } from "../db/prepared";
import { blocks, type UserRow, users } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { decodeCursor, toPage } from "../lib/cursor";
import { ApiError } from "../lib/errors";
import { newId } from "../lib/ids";
import type { AuthUser } from "../lib/types";
import { toUser, type User } from "../schemas/user";
import { adminRefusal } from "./admin-access";
import type { AuditActor } from "./audit";
import { closeForSuspension } from "./realtime";

/** Display names are compared and searched in this form (users.display_name_key). */
export const displayNameKey = (displayName: string) => displayName.normalize("NFC").toLowerCase();

export async function findUser(db: Database, userId: string): Promise<UserRow | undefined> {
  return userById(db).get({ userId });
}

/**
 * The by-id read every profile request makes, built once per database (Drizzle's query building
 * was a fifth of `GET /users/me`'s thread time: bench/README.md) and bound per call.
 */
const userById = preparedPerDatabase((db) =>
  db
    .select()
    .from(users)
    .where(eq(users.id, sql.placeholder("userId")))
    .prepare(),
);

/** The user, or 404 `user_not_found`. */
export async function getUserOrThrow(db: Database, userId: string): Promise<UserRow> {
  const row = await findUser(db, userId);
  if (!row) throw new ApiError("user_not_found", [`No user with id ${userId}`]);
  return row;
}

/** Who looks at a profile: their id, and whether they see every email (`seesEveryEmail`). */
export type ProfileViewer = { id: string; seesEveryEmail: boolean };

/**
 * The viewer as email visibility sees them (API.md §2): every email only for an admin who is one
 * now, active, in a live session, decided by the admin check itself (services/admin-access.ts:
 * one call on the viewer's object, the owner of role and status; no D1 query), never by the
 * token's `role` claim or D1's index, so a suspended or demoted admin sees no emails from the next
 * request, and an operator's promotion shows them without a new token. Callers run it beside
 * their own read, so it adds no round trip of latency.
 */
export async function profileViewer(env: Env, viewer: AuthUser): Promise<ProfileViewer> {
  return { id: viewer.id, seesEveryEmail: (await adminRefusal(env, viewer)) === null };
}

/** The viewer of an admin route, after its admin check passed on this request. */
export const checkedAdminViewer = (viewer: AuthUser): ProfileViewer => ({ id: viewer.id, seesEveryEmail: true });

/** Email only for the user themselves and for admins as they are now (API.md §2). */
export function userAsSeenBy(viewer: ProfileViewer, row: UserRow): User {
  return toUser(row, { includeEmail: viewer.id === row.id || viewer.seesEveryEmail });
}

export type BlockState = { userId: string; blocked: boolean };

function refuseSelf(action: string): ApiError {
  return new ApiError("validation_failed", [`userId: you cannot ${action} yourself`]);
}

/**
 * Idempotent: blocking someone already blocked answers the same. The blocker's object owns the
 * fact (wallet/account.ts): it takes the change with a new version, and its outbox tells the
 * pair's direct chat and the D1 index before this answers (or, when either is down, by its alarm
 * until acknowledged); the latest of a block and an unblock has the higher version and wins.
 */
export async function blockUser(env: Env, db: Database, blockerId: string, blockedId: string): Promise<BlockState> {
  return setBlock(env, db, blockerId, blockedId, true);
}

/** Idempotent: unblocking someone not blocked answers the same (through the blocker's object, as a block). */
export async function unblockUser(env: Env, db: Database, blockerId: string, blockedId: string): Promise<BlockState> {
  return setBlock(env, db, blockerId, blockedId, false);
}

async function setBlock(env: Env, db: Database, blockerId: string, blockedId: string, blocked: boolean): Promise<BlockState> {
  if (blockerId === blockedId) throw refuseSelf(blocked ? "block" : "unblock");
  await getUserOrThrow(db, blockedId);
  await walletStub(env, blockerId).setBlock(blockerId, blockedId, blocked);
  return { userId: blockedId, blocked };
}

/**
 * Suspends or reinstates a user; idempotent (a new reason replaces the old). Admins cannot
 * suspend themselves, so the last admin cannot lock the product's operators out by accident
 * (lifting one's own suspension is refused by the admin check). The user's object owns the status
 * (wallet/account.ts): it takes the change with a new version and, before answering, writes the
 * D1 index with the audit row (one batch) and tells every chat of the user, which apply it
 * forward only (a later reinstatement or suspension always wins); what it could not deliver its
 * alarm retries until acknowledged. A suspension then closes every realtime socket of the user (4003).
 */
export async function setSuspension(
  env: Env,
  db: Database,
  actor: AuditActor,
  userId: string,
  change: { suspended: boolean; reason: string | null },
): Promise<UserRow> {
  if (change.suspended && actor.actorId === userId) throw refuseSelf("suspend");
  const row = await getUserOrThrow(db, userId);
  const now = Date.now();
  const audit = { id: newId(now), ...actor, detail: { reason: change.reason }, at: now };
  const status = change.suspended ? "suspended" : "active";
  const state = await walletStub(env, userId).setStatus(userId, status, change.reason, audit);
  if (change.suspended) await closeForSuspension(env, userId);
  // The role as the directory has it: where the operator command writes it (docs/wallets.md, "Account facts").
  return { ...row, status: state.status, suspendedReason: change.suspended ? change.reason : null };
}

const searchCursorShape = z.object({ k: z.string(), i: z.string() });

/** Above every code point, so `key < prefix + MAX` bounds a prefix range on the index. */
const MAX_CODE_POINT = String.fromCodePoint(0x10ffff);

/**
 * Users whose display name starts with `search` (case-insensitively) or whose email is exactly
 * `search`, ordered by display name then id, paged by a (key, id) cursor on the index
 * `users_display_name_key_idx`. Without `search`, everyone in that order.
 */
export async function searchUsers(
  env: Env,
  db: Database,
  caller: AuthUser,
  query: { search?: string | undefined; limit: number; cursor?: string | undefined },
): Promise<{ items: User[]; nextCursor: string | null }> {
  const conditions: (SQL | undefined)[] = [];
  const term = query.search?.trim();
  if (term) {
    const prefix = displayNameKey(term);
    conditions.push(
      or(
        and(gte(users.displayNameKey, prefix), lt(users.displayNameKey, prefix + MAX_CODE_POINT)),
        eq(users.email, term.toLowerCase()),
      ),
    );
  }
  if (query.cursor) {
    const after = decodeCursor(query.cursor, searchCursorShape);
    conditions.push(or(gt(users.displayNameKey, after.k), and(eq(users.displayNameKey, after.k), gt(users.id, after.i))));
  }
  const [rows, viewer] = await Promise.all([
    db
      .select()
      .from(users)
      .where(and(...conditions))
      .orderBy(asc(users.displayNameKey), asc(users.id))
      .limit(query.limit + 1),
    profileViewer(env, caller),
  ]);
  return toPage(
    rows,
    query.limit,
    (row) => userAsSeenBy(viewer, row),
    (row) => ({ k: row.displayNameKey, i: row.id }),
  );
}
