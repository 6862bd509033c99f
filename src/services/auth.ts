import { and, eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { type UserRow, users } from "../db/schema";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import type { Config } from "../lib/config";
import { ApiError } from "../lib/errors";
import { newId } from "../lib/ids";
import { ACCESS_TOKEN_TTL_SECONDS, signAccessToken } from "../lib/jwt";
import { log } from "../lib/log";
import type { AuthUser } from "../lib/types";
import { hashPassword, verifyPassword } from "./password";
import { endSessions } from "./realtime";
import { sessionEnded } from "./session-check";
import { displayNameKey, findUser } from "./users";
import { openWallet } from "./wallets";

/**
 * Accounts and sessions. D1 owns the account (email, password hash, display name); the user's
 * object (WalletDO, durable-objects/wallet/sessions.ts) owns the sessions and decides every
 * rotation and revocation in one transaction of its own (ARCHITECTURE.md §11). A session is a
 * 15-minute access token (JWT, see lib/jwt.ts) plus an opaque refresh token, valid 30 days, in a
 * family that starts at sign-in: `<user id>.<256 random bits>`, so that a refresh reaches its
 * owner's object without a lookup; the object stores only its SHA-256. Each refresh uses up the
 * presented token and issues the next one of the family; presenting a used token again means it
 * leaked (or a client raced itself), so the whole family is revoked. Logout revokes the family;
 * logout-all and a password change revoke every family of the user. Access tokens already issued
 * run out on their own, but they carry their family (`sid`), and what they opened ends with it: a
 * revocation closes that session's realtime sockets (4001) in the same request, and no ticket is
 * issued to a revoked session.
 *
 * Where it matters, an ended session's access token is refused at once (401 `session_ended`):
 * routes that move credits (the sender's object checks it inside the transfer), the account
 * routes (logout-all, password, realtime tickets) and admin routes ask the caller's object, never
 * D1. Every other route accepts the token until it expires, as OAuth access tokens are accepted
 * (README, "Sessions").
 */

/** 401 `session_ended`: the session (refresh-token family) of this access token was revoked. */
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

/** A refresh token's form: its owner's id, a dot, 32 random bytes in base64url. Opaque to clients. */
const REFRESH_TOKEN_FORMAT = /^([0-9a-f]{24})\.[A-Za-z0-9_-]{43}$/;

/** A new refresh token of `userId` and the SHA-256 its owner's object keeps. */
async function newRefreshToken(userId: string): Promise<{ token: string; hash: string }> {
  const token = `${userId}.${toBase64Url(crypto.getRandomValues(new Uint8Array(32)))}`;
  return { token, hash: await sha256Hex(token) };
}

/** The owner of a refresh token, read from the token itself; 401 `invalid_token` for any other form. */
function ownerOf(refreshToken: string): string {
  const owner = REFRESH_TOKEN_FORMAT.exec(refreshToken)?.[1];
  if (!owner) throw invalidRefreshToken();
  return owner;
}

const sessionPair = async (config: Config, user: UserRow, familyId: string, refreshToken: string): Promise<Session> => ({
  user,
  accessToken: await signAccessToken(config, { id: user.id, role: user.role, sessionId: familyId }),
  refreshToken,
  expiresIn: ACCESS_TOKEN_TTL_SECONDS,
});

/** Starts a new session (refresh-token family) of `user` in the user's object and signs its first pair. */
async function issueSession(env: Env, config: Config, user: UserRow): Promise<Session> {
  const familyId = newId();
  const refresh = await newRefreshToken(user.id);
  await walletStub(env, user.id).startSession(familyId, refresh.hash);
  return sessionPair(config, user, familyId, refresh.token);
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
  const session = await issueSession(env, config, row);
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
export async function login(
  env: Env,
  db: Database,
  config: Config,
  input: { email: string; password: string },
): Promise<Session> {
  const user = await db
    .select()
    .from(users)
    .where(eq(users.email, normalizeEmail(input.email)))
    .get();
  const matches = await verifyPassword(input.password, user?.passwordHash);
  if (!user || !matches) throw invalidCredentials();
  return issueSession(env, config, user);
}

/**
 * Exchanges a refresh token for a new pair: its owner's object uses it up and adds the next token
 * to its family in one transaction, or refuses (401 `invalid_token`): an unknown, expired or
 * revoked token, or a used one, whose family that same transaction revokes (reuse), closing its
 * sockets. The account's row is read after the rotation, for the answer's `user`.
 */
export async function refresh(env: Env, db: Database, config: Config, refreshToken: string): Promise<Session> {
  const userId = ownerOf(refreshToken);
  const next = await newRefreshToken(userId);
  const rotation = await walletStub(env, userId).rotateSession(await sha256Hex(refreshToken), next.hash);
  if (!rotation.ok) {
    if (rotation.reusedFamily !== null) await closeAfterReuse(env, userId, rotation.reusedFamily);
    throw invalidRefreshToken();
  }
  const user = await findUser(db, userId);
  if (!user) throw invalidRefreshToken();
  return sessionPair(config, user, rotation.familyId, next.token);
}

/**
 * Reuse ends the family. The answer is 401 whatever happens to its sockets, so a failure to close
 * them (the revocation stands) is logged rather than turned into a 500 the client cannot act on.
 */
async function closeAfterReuse(env: Env, userId: string, familyId: string): Promise<void> {
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
export async function logout(env: Env, caller: AuthUser, refreshToken: string): Promise<void> {
  if (ownerOf(refreshToken) !== caller.id) throw invalidRefreshToken();
  const familyId = await walletStub(env, caller.id).endSession(await sha256Hex(refreshToken));
  if (familyId === null) throw invalidRefreshToken();
  // A failure here answers 500 with the family revoked; logging out again closes the sockets.
  await endSessions(env, caller.id, [familyId], { everySocket: false });
}

/**
 * Log out everywhere: revokes every family of the caller (the caller's own included) and closes
 * all of the caller's sockets. Returns how many sessions were still live. 401 `session_ended`
 * (nothing revoked) when the caller's own session had already ended: the check and the
 * revocation are one transaction of the caller's object. No D1 query.
 */
export async function logoutAll(env: Env, caller: AuthUser): Promise<{ revokedSessions: number }> {
  const ended = await walletStub(env, caller.id).endAllSessions(caller.sessionId);
  if (!ended.ok) throw new ApiError(ended.code, ended.details);
  await endSessions(env, caller.id, [...ended.revoked, caller.sessionId], { everySocket: true });
  return { revokedSessions: ended.revoked.length };
}

/**
 * Changes the caller's password: 401 `invalid_credentials` unless `currentPassword` is the
 * current one (checked with the same constant-time PBKDF2 work as sign-in), 401 `session_ended`
 * when the caller's session has ended. The new hash is written to D1 only if the row still holds
 * the hash that was checked (two changes racing: the second is 401 with nothing changed); then
 * the caller's object revokes every session and starts the new one in one transaction, and every
 * socket closes. The answer is that new session, the only one left.
 */
export async function changePassword(
  env: Env,
  db: Database,
  config: Config,
  caller: AuthUser,
  input: { currentPassword: string; newPassword: string },
): Promise<Session> {
  const owner = walletStub(env, caller.id);
  const [user, live] = await Promise.all([findUser(db, caller.id), owner.sessionLive(caller.sessionId)]);
  const matches = await verifyPassword(input.currentPassword, user?.passwordHash);
  if (!user) throw accountGone();
  if (!live) throw sessionEnded();
  if (!matches) throw new ApiError("invalid_credentials", ["The current password is incorrect"]);

  const passwordHash = await hashPassword(input.newPassword);
  const updated = await db
    .update(users)
    .set({ passwordHash })
    .where(and(eq(users.id, caller.id), eq(users.passwordHash, user.passwordHash)))
    .returning({ id: users.id });
  if (updated.length !== 1) throw new ApiError("invalid_credentials", ["The current password is incorrect"]);
  const replaced = await replaceSessions(env, caller);
  await endSessions(env, caller.id, [...replaced.revoked, caller.sessionId], { everySocket: true });
  return sessionPair(config, { ...user, passwordHash }, replaced.familyId, replaced.token);
}

/**
 * The object's half of a password change, tried twice: the hash in D1 has changed already, so
 * giving up at the first failure would leave the old sessions live. Each attempt starts its own
 * family; one that committed but whose answer was lost is revoked by the next (never handed out).
 */
async function replaceSessions(env: Env, caller: AuthUser): Promise<{ familyId: string; token: string; revoked: string[] }> {
  for (let attempt = 1; ; attempt += 1) {
    const familyId = newId();
    const next = await newRefreshToken(caller.id);
    try {
      const revoked = await walletStub(env, caller.id).replaceSessions(caller.sessionId, familyId, next.hash);
      return { familyId, token: next.token, revoked };
    } catch (error) {
      if (attempt >= 2) throw error;
      log.error("replace_sessions_failed", { userId: caller.id, attempt, error });
    }
  }
}

const accountGone = () => new ApiError("invalid_token", ["The account of this access token no longer exists"]);
