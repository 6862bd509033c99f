import { and, eq, exists, gt, isNotNull, isNull, notExists, type SQL, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Database } from "../db/client";
import type { Param } from "../db/prepared";
import { refreshTokens, type UserRow, users } from "../db/schema";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import { newId } from "../lib/ids";
import { ACCESS_TOKEN_TTL_SECONDS, signAccessToken } from "../lib/jwt";
import { log } from "../lib/log";
import type { AuthUser } from "../lib/types";
import { hashPassword, verifyPassword } from "./password";
import { endSessions } from "./realtime";
import { displayNameKey, findUser } from "./users";
import { openWallet } from "./wallets";

/**
 * Accounts and sessions. A session is a 15-minute access token (JWT, see lib/jwt.ts) plus an
 * opaque refresh token: 256 random bits, stored only as its SHA-256, valid 30 days, in a family
 * that starts at sign-in. Each refresh uses up the presented token and issues the next one of the
 * family; presenting a used token again means it leaked (or a client raced itself), so the whole
 * family is revoked. Logout revokes the family; logout-all and a password change revoke every
 * family of the user. Access tokens already issued run out on their own, but they carry their
 * family (`sid`), and what they opened ends with it: a revocation closes that session's realtime
 * sockets (4001) in the same request, and no ticket is issued to a revoked session.
 *
 * Where it matters, an ended session's access token is refused at once (401 `session_ended`):
 * routes that move credits, the account routes (logout-all, password, realtime tickets) and admin
 * routes read `sessionLiveSql` in a D1 round trip they already make. Every other route accepts
 * the token until it expires, as OAuth access tokens are accepted (README, "Sessions").
 */
export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/**
 * How long a revoked refresh-token row is kept (src/services/maintenance.ts): it is what says its
 * session ended, so it must outlive every access token of that session (15 minutes, counted from
 * a refresh that raced the revocation at the latest).
 */
export const REVOKED_SESSION_RETENTION_MS = 60 * 60 * 1000;

/** 401 `session_ended`: the session (refresh-token family) of this access token was revoked. */
export const sessionEnded = () =>
  new ApiError("session_ended", ["The session of this access token has ended (logout, password change); sign in again"]);

/**
 * SQL: the session `sessionId` has not ended. A family counts as ended as soon as any of its
 * tokens is revoked (as `refresh` counts it, so a token issued by a refresh racing the revocation
 * is ended too). A session with no token row was never revocable and is live (tests seed those).
 */
export const sessionLiveSql = (sessionId: Param<string>) =>
  sql<boolean>`NOT EXISTS (SELECT 1 FROM ${refreshTokens} WHERE ${refreshTokens.familyId} = ${sessionId} AND ${refreshTokens.revokedAt} IS NOT NULL)`.mapWith(
    Boolean,
  );

export type Session = { user: UserRow; accessToken: string; refreshToken: string; expiresIn: number };

const normalizeEmail = (email: string) => email.trim().toLowerCase();

function invalidCredentials(): ApiError {
  return new ApiError("invalid_credentials", ["Email or password is incorrect"]);
}

function invalidRefreshToken(): ApiError {
  return new ApiError("invalid_token", ["The refresh token is not valid; sign in again"]);
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Signs an access token and stores a new refresh token of `familyId` (a new family when absent). */
async function issueSession(db: Database, config: Config, user: UserRow, familyId: string = newId()): Promise<Session> {
  const now = Date.now();
  const refreshToken = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  await db.insert(refreshTokens).values({
    id: newId(now),
    userId: user.id,
    familyId,
    tokenHash: await sha256Hex(refreshToken),
    expiresAt: now + REFRESH_TOKEN_TTL_MS,
    createdAt: now,
  });
  const accessToken = await signAccessToken(config, { id: user.id, role: user.role, sessionId: familyId }, now);
  return { user, accessToken, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SECONDS };
}

/** D1's unique-constraint failure, also when Drizzle wraps it ("Failed query: …", the D1 error as its `cause`). */
export const isUniqueViolation = (error: unknown): boolean =>
  error instanceof Error && (/UNIQUE constraint failed/i.test(error.message) || isUniqueViolation(error.cause));

/**
 * Creates the account (admin when its email is in ADMIN_EMAILS), signs it in, and opens its
 * wallet as the last step. 409 `already_exists` if the email is taken in any letter case.
 */
export async function register(
  env: Env,
  db: Database,
  config: Config,
  input: { email: string; password: string; displayName: string },
): Promise<Session> {
  const email = normalizeEmail(input.email);
  const taken = () => new ApiError("already_exists", ["An account with this email already exists"]);
  if (await db.select({ id: users.id }).from(users).where(eq(users.email, email)).get()) throw taken();

  const displayName = input.displayName.normalize("NFC").trim();
  const now = Date.now();
  const row: UserRow = {
    id: newId(now),
    email,
    displayName,
    displayNameKey: displayNameKey(displayName),
    passwordHash: await hashPassword(input.password),
    role: config.adminEmails.includes(email) ? "admin" : "user",
    status: "active",
    suspendedReason: null,
    factsVersion: 0,
    createdAt: now,
  };
  try {
    await db.insert(users).values(row);
  } catch (error) {
    // Two registrations of one email at once: the unique index decides, the loser gets the same 409.
    if (isUniqueViolation(error)) throw taken();
    throw error;
  }
  const session = await issueSession(db, config, row);
  try {
    await openWallet(env, row.id, row.role);
  } catch (error) {
    // The account exists and the client holds its tokens; wallets also open on first use, which
    // applies the signup grant then. Failing the request here would leave a registered email the
    // client was told is not.
    log.error("open_wallet_failed", { userId: row.id, error });
  }
  return session;
}

/** 401 `invalid_credentials`, with the same work and the same answer, for an unknown email and a wrong password. */
export async function login(db: Database, config: Config, input: { email: string; password: string }): Promise<Session> {
  const user = await db
    .select()
    .from(users)
    .where(eq(users.email, normalizeEmail(input.email)))
    .get();
  const matches = await verifyPassword(input.password, user?.passwordHash);
  if (!user || !matches) throw invalidCredentials();
  return issueSession(db, config, user);
}

async function revokeFamily(db: Database, familyId: string, now = Date.now()): Promise<void> {
  await db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
}

/**
 * The families of `userId` that a revocation of all of them would end: those not revoked with
 * a token not yet expired (an expired family has no refresh token and no live access token).
 */
const liveFamiliesOf = (db: Database, userId: string, now: number) =>
  db
    .selectDistinct({ familyId: refreshTokens.familyId })
    .from(refreshTokens)
    .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt), gt(refreshTokens.expiresAt, now)));

/** Revokes every family of the user not yet revoked (logout-all, password change), `onlyIf` holds. */
const revokeAllFamiliesOf = (db: Database, userId: string, now: number, onlyIf?: SQL) =>
  db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt), onlyIf));

/**
 * Exchanges a refresh token for a new pair. The token is used up by a conditional UPDATE
 * (`used_at IS NULL`, family not revoked), so of two concurrent refreshes with one token exactly
 * one wins; the other counts as reuse and revokes the family, as a replayed stolen token would,
 * and that includes the token the winner is issuing.
 */
export async function refresh(env: Env, db: Database, config: Config, refreshToken: string): Promise<Session> {
  const now = Date.now();
  const tokenHash = await sha256Hex(refreshToken);
  const row = await db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenHash)).get();
  if (!row || row.revokedAt !== null || row.expiresAt <= now) throw invalidRefreshToken();
  if (row.usedAt !== null) {
    await endFamilyOnReuse(env, db, row.userId, row.familyId);
    throw invalidRefreshToken();
  }
  // A family counts as revoked as soon as any of its tokens is: a revocation that raced with the
  // insert of a newer token (a concurrent refresh or logout) still stops that token here.
  const revokedMember = alias(refreshTokens, "revoked_member");
  const claimed = await db
    .update(refreshTokens)
    .set({ usedAt: now })
    .where(
      and(
        eq(refreshTokens.id, row.id),
        isNull(refreshTokens.usedAt),
        isNull(refreshTokens.revokedAt),
        notExists(
          db
            .select({ id: revokedMember.id })
            .from(revokedMember)
            .where(and(eq(revokedMember.familyId, row.familyId), isNotNull(revokedMember.revokedAt))),
        ),
      ),
    );
  if (claimed.meta.changes !== 1) {
    await endFamilyOnReuse(env, db, row.userId, row.familyId);
    throw invalidRefreshToken();
  }
  const user = await findUser(db, row.userId);
  if (!user) throw invalidRefreshToken();
  return issueSession(db, config, user, row.familyId);
}

/**
 * Reuse ends the family. The answer is 401 whatever happens to its sockets, so a failure to close
 * them (the revocation stands) is logged rather than turned into a 500 the client cannot act on.
 */
async function endFamilyOnReuse(env: Env, db: Database, userId: string, familyId: string): Promise<void> {
  await revokeFamily(db, familyId);
  try {
    await endSessions(env, userId, [familyId], { everySocket: false });
  } catch (error) {
    log.error("end_session_failed", { userId, familyId, error });
  }
}

/**
 * Revokes the family of `refreshToken`, which must be one of the caller's (401 `invalid_token`
 * otherwise), and closes its sockets. Idempotent: logging out of a family already revoked or
 * rotated answers the same (and closes whatever of it is still open).
 */
export async function logout(env: Env, db: Database, caller: AuthUser, refreshToken: string): Promise<void> {
  const row = await db
    .select()
    .from(refreshTokens)
    .where(eq(refreshTokens.tokenHash, await sha256Hex(refreshToken)))
    .get();
  if (!row || row.userId !== caller.id) throw invalidRefreshToken();
  await revokeFamily(db, row.familyId);
  // A failure here answers 500 with the family revoked; logging out again closes the sockets.
  await endSessions(env, caller.id, [row.familyId], { everySocket: false });
}

/**
 * Log out everywhere: revokes every family of the caller (the caller's own included) and closes
 * all of the caller's sockets. Returns how many sessions were still live. 401 `session_ended`
 * (nothing revoked) when the caller's own session had already ended: the check and the
 * revocation are one batch, one transaction.
 */
export async function logoutAll(env: Env, db: Database, caller: AuthUser): Promise<{ revokedSessions: number }> {
  const now = Date.now();
  const live = sessionLiveSql(caller.sessionId);
  const [session, families] = await db.batch([
    db
      .select({ live: live.as("session_live") })
      .from(users)
      .where(eq(users.id, caller.id)),
    liveFamiliesOf(db, caller.id, now),
    revokeAllFamiliesOf(db, caller.id, now, live),
  ]);
  if (!session[0]?.live) throw session[0] ? sessionEnded() : accountGone();
  const familyIds = families.map((family) => family.familyId);
  await endSessions(env, caller.id, [...familyIds, caller.sessionId], { everySocket: true });
  return { revokedSessions: familyIds.length };
}

/**
 * Changes the caller's password: 401 `invalid_credentials` unless `currentPassword` is the
 * current one (checked with the same constant-time PBKDF2 work as sign-in). Every session of the
 * caller is revoked and every socket closed, in one D1 transaction with the new hash; the answer
 * is a new session, the only one left. Two changes racing: the second finds the password it
 * checked replaced, and is 401 with nothing changed.
 */
export async function changePassword(
  env: Env,
  db: Database,
  config: Config,
  caller: AuthUser,
  input: { currentPassword: string; newPassword: string },
): Promise<Session> {
  const found = await db
    .select({ user: users, sessionLive: sessionLiveSql(caller.sessionId) })
    .from(users)
    .where(eq(users.id, caller.id))
    .get();
  const user = found?.user;
  const matches = await verifyPassword(input.currentPassword, user?.passwordHash);
  if (!user) throw accountGone();
  if (!found.sessionLive) throw sessionEnded();
  if (!matches) throw new ApiError("invalid_credentials", ["The current password is incorrect"]);

  const now = Date.now();
  const passwordHash = await hashPassword(input.newPassword);
  const [families, updated] = await db.batch([
    liveFamiliesOf(db, caller.id, now),
    db
      .update(users)
      .set({ passwordHash })
      .where(and(eq(users.id, caller.id), eq(users.passwordHash, user.passwordHash)))
      .returning({ id: users.id }),
    // Only if the row above changed: the same transaction, so a lost race revokes nothing.
    revokeAllFamiliesOf(
      db,
      caller.id,
      now,
      exists(
        db
          .select({ id: users.id })
          .from(users)
          .where(and(eq(users.id, caller.id), eq(users.passwordHash, passwordHash))),
      ),
    ),
  ]);
  if (updated.length !== 1) throw new ApiError("invalid_credentials", ["The current password is incorrect"]);
  await endSessions(env, caller.id, families.map((family) => family.familyId).concat(caller.sessionId), { everySocket: true });
  return issueSession(db, config, { ...user, passwordHash });
}

/** 401 `session_ended` when the caller's session (refresh-token family) has been revoked. */
export async function assertSessionLive(db: Database, caller: AuthUser): Promise<void> {
  const row = await db
    .select({ live: sessionLiveSql(caller.sessionId) })
    .from(sql`(SELECT 1)`)
    .get();
  if (!row?.live) throw sessionEnded();
}

const accountGone = () => new ApiError("invalid_token", ["The account of this access token no longer exists"]);
