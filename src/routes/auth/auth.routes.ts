import { defineRoute, jsonSuccess, SESSION_ENDED_NOTE } from "../../lib/openapi";
import {
  changePasswordBodySchema,
  loginBodySchema,
  logoutAllResultSchema,
  logoutResultSchema,
  refreshBodySchema,
  registerBodySchema,
  sessionSchema,
  signInSessionSchema,
} from "../../schemas/auth";

const TAGS = ["Auth"];
const json = <T>(schema: T) => ({ required: true, content: { "application/json": { schema } } });

const IP_LIMIT =
  "Rate limited per client IP (`CF-Connecting-IP`) across register, login, refresh and password change: `RATE_LIMIT_AUTH_IP_PER_MINUTE` (default 300) requests per sliding minute. Responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds); over the limit: 429 `rate_limited` with `Retry-After`.";

export const register = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/register",
    operationId: "registerUser",
    tags: TAGS,
    summary: "Register a new user",
    description: [
      "Creates an account and signs it in. Emails are unique case-insensitively (409 `already_exists`); nobody becomes an admin by registering (an operator makes admins with `npm run admin`; only local development also promotes the emails listed in `ADMIN_EMAILS`). The new wallet receives the `SIGNUP_CREDITS` welcome grant.",
      "Validation (400 `validation_failed`, one `field: message` per problem): `email` a valid address of at most 254 characters; `password` 8..128 characters; `displayName` 1..64 characters after trimming.",
      IP_LIMIT,
    ].join("\n\n"),
    request: {
      body: json(
        registerBodySchema.openapi({
          example: { email: "alice@example.com", password: "correct horse battery", displayName: "Alice" },
        }),
      ),
    },
    responses: { 201: jsonSuccess(signInSessionSchema, 201, "The new user, its first session and a device token") },
  },
  { auth: "none", rateLimit: ["authIp"], errors: [409] },
);

export const login = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/login",
    operationId: "logIn",
    tags: TAGS,
    summary: "Sign in with email and password",
    description: [
      "Starts a new session (a new refresh-token family). An unknown email and a wrong password get the same 401 `invalid_credentials` answer after the same work, so accounts cannot be discovered here. Suspended users can sign in (and read).",
      "Failed sign-ins are limited per email and client address together (`RATE_LIMIT_LOGIN_PER_MINUTE`, default 10 per sliding minute; IPv6 addresses counted by their /64) and per email alone (`RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE`, default 50), so a stranger's wrong guesses from one address do not lock the owner out of signing in from another. A sign-in with the right password is not counted. Over a limit: 429 `rate_limited` with `Retry-After`, even for the right password; `X-RateLimit-*` describe the tighter of the two counts.",
      "**Device token:** every successful sign-in and registration answers a `deviceToken`. Send it back with the next sign-in of that email from that device: the per-email ceiling (which strangers' guesses from many addresses can fill) does not apply to it, and its failures count per email and token at `RATE_LIMIT_LOGIN_PER_MINUTE` instead; so a storm of wrong guesses cannot keep the owner out of a device they signed in on in the last 30 days. A token that does not verify counts as none (never a 400).",
      IP_LIMIT,
    ].join("\n\n"),
    request: {
      body: json(loginBodySchema.openapi({ example: { email: "alice@example.com", password: "correct horse battery" } })),
    },
    responses: { 200: jsonSuccess(signInSessionSchema, 200, "The user, a new session and a device token") },
  },
  // The failed sign-ins last, so the headers a client sees are those of the tighter limit.
  { auth: "none", rateLimit: ["authIp", "signIn"], errors: [401] },
);

export const refresh = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/refresh",
    operationId: "refreshSession",
    tags: TAGS,
    summary: "Refresh an access token",
    description: [
      "Trades a refresh token for a new access token and a new refresh token; the presented one stops working. Presenting a refresh token that was already used revokes its whole family (every token descended from the same sign-in): 401 `invalid_token`, and the client must sign in again. An unknown, revoked or expired (30 days) refresh token is 401 `invalid_token`. Access tokens already issued stay valid until they expire (15 minutes).",
      IP_LIMIT,
    ].join("\n\n"),
    request: {
      body: json(
        refreshBodySchema.openapi({
          example: { refreshToken: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEeHfGi5jKn_M4" },
        }),
      ),
    },
    responses: { 200: jsonSuccess(sessionSchema, 200, "A new session pair") },
  },
  { auth: "none", rateLimit: ["authIp"], errors: [401] },
);

export const logout = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/logout",
    operationId: "logOut",
    tags: TAGS,
    summary: "Sign out of a session",
    description:
      "Revokes the family of the given refresh token (it must belong to the caller, else 401 `invalid_token`) and closes that session's realtime sockets with code 4001 `session_ended` (the caller's other sessions and their sockets are untouched). Idempotent: signing out of a session already revoked answers 200 again. The access token is refused at once (401 `session_ended`) where it matters — credit transfers, grants, logout-all, password change, realtime tickets and admin routes — and elsewhere still reads until it expires (15 minutes); clients drop it.",
    request: {
      body: json(
        refreshBodySchema.openapi({
          example: { refreshToken: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEeHfGi5jKn_M4" },
        }),
      ),
    },
    responses: { 200: jsonSuccess(logoutResultSchema, 200, "The session is revoked") },
  },
  { auth: "user" },
);

const SESSION_END = [
  "Every realtime socket of the revoked sessions is closed with code 4001 `session_ended` before the answer. Their access tokens are refused at once (401 `session_ended`) on credit transfers, grants, logout-all, password change, realtime tickets and admin routes; other routes accept them until they expire (15 minutes).",
  SESSION_ENDED_NOTE,
].join("\n\n");

export const logoutAll = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/logout-all",
    operationId: "logOutAll",
    tags: TAGS,
    summary: "Sign out of every session",
    description: [
      "Log out everywhere: revokes every refresh-token family (session) of the caller, the one of this access token included, so every device must sign in again. No request body. Revoking and checking this token's session are one transaction: called again with the same (now ended) access token it is 401 `session_ended` and changes nothing.",
      SESSION_END,
    ].join("\n\n"),
    responses: { 200: jsonSuccess(logoutAllResultSchema, 200, "Every session of the caller is revoked") },
  },
  { auth: "user" },
);

export const changePassword = defineRoute(
  {
    method: "post",
    path: "/api/v1/auth/password",
    operationId: "changePassword",
    tags: TAGS,
    summary: "Change the password",
    description: [
      "Replaces the caller's password and answers a fresh session pair (like sign-in), which is then the caller's only session: every other session, the one of this access token included, is revoked. A wrong `currentPassword` is 401 `invalid_credentials` (checked with the same constant-time work as sign-in); `newPassword` follows the registration rules (8..128 characters, else 400 `validation_failed`).",
      SESSION_END,
      "Rate limited like sign-in: `RATE_LIMIT_LOGIN_PER_MINUTE` (default 10) attempts per account per sliding minute, successful or not, and per client IP (`RATE_LIMIT_AUTH_IP_PER_MINUTE`, default 300). Responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; over a limit: 429 `rate_limited` with `Retry-After`.",
    ].join("\n\n"),
    request: {
      body: json(
        changePasswordBodySchema.openapi({
          example: { currentPassword: "correct horse battery", newPassword: "a much longer passphrase" },
        }),
      ),
    },
    responses: { 200: jsonSuccess(sessionSchema, 200, "The new session, the caller's only one") },
  },
  { auth: "user", rateLimit: ["authIp", "password"] },
);
