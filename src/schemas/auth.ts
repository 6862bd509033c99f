import { z } from "@hono/zod-openapi";
import { BIDI_CONTROL_RANGES } from "./text";
import { userSchema } from "./user";

/** Request and response bodies of /api/v1/auth/*, with the limits of API.md §1. */
const requiredString = () => z.string({ error: (issue) => (issue.input === undefined ? "is required" : "must be a string") });

export const emailField = requiredString()
  .trim()
  .max(254, { message: "must be at most 254 characters" })
  .regex(z.regexes.email, { message: "must be a valid email address" })
  .openapi({ format: "email", example: "alice@example.com", description: "Case-insensitive; at most 254 characters." });

export const newPasswordField = requiredString()
  .min(8, { message: "must be at least 8 characters" })
  .max(128, { message: "must be at most 128 characters" })
  .openapi({ format: "password", example: "correct horse battery", description: "8..128 characters." });

export const displayNameField = requiredString()
  .trim()
  .min(1, { message: "must not be blank" })
  .max(64, { message: "must be at most 64 characters" })
  // Cc (control characters) and the bidirectional controls (schemas/text.ts) written as ranges in
  // one pattern: with no flags and no \p{…} it means the same in JSON Schema, so validating clients
  // accept exactly what the server accepts.
  .regex(new RegExp(`^[^\\u0000-\\u001f\\u007f-\\u009f${BIDI_CONTROL_RANGES}]*$`), {
    message: "must not contain control characters or bidirectional override characters (U+202A–U+202E, U+2066–U+2069)",
  })
  .openapi({
    example: "Alice",
    description:
      "1..64 characters after trimming; shown to other users. No control characters and no bidirectional override characters (U+202A–U+202E, U+2066–U+2069).",
  });

/** Any length a real password can have: a too-short one is simply wrong (401), not a 400 that hints at the policy. */
const passwordField = requiredString()
  .min(1, { message: "must not be empty" })
  .max(128, { message: "must be at most 128 characters" })
  .openapi({ format: "password", example: "correct horse battery" });

const refreshTokenField = requiredString()
  .min(1, { message: "must not be empty" })
  .max(512, { message: "must be at most 512 characters" })
  .openapi({
    example: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEeHfGi5jKn_M4",
    description: "The opaque refresh token of a session.",
  });

export const registerBodySchema = z
  .object({ email: emailField, password: newPasswordField, displayName: displayNameField })
  .openapi("RegisterRequest");

export const loginBodySchema = z.object({ email: emailField, password: passwordField }).openapi("LoginRequest");

export const refreshBodySchema = z.object({ refreshToken: refreshTokenField }).openapi("RefreshRequest");

export const sessionSchema = z
  .object({
    user: userSchema,
    accessToken: z.string().openapi({
      example: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2NGQxNWY5ZTJlNmM4ZjRkNWExMjM0NTYifQ.c2lnbmF0dXJl",
      description: "JWT (HS256) for `Authorization: Bearer …`; valid `expiresIn` seconds.",
    }),
    refreshToken: z.string().openapi({
      example: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEeHfGi5jKn_M4",
      description: "Opaque, single-use, valid 30 days: trade it at `POST /api/v1/auth/refresh` for a new pair.",
    }),
    expiresIn: z.number().int().openapi({ example: 900, description: "Seconds until the access token expires." }),
  })
  .openapi("Session");

export const logoutResultSchema = z.object({ loggedOut: z.literal(true) }).openapi("LogoutResult");

export const logoutAllResultSchema = z
  .object({
    loggedOut: z.literal(true),
    revokedSessions: z
      .number()
      .int()
      .min(0)
      .openapi({ example: 3, description: "How many sessions (refresh-token families) were still live and are now revoked." }),
  })
  .openapi("LogoutAllResult");

export const changePasswordBodySchema = z
  .object({
    currentPassword: passwordField.openapi({ description: "The password the account has now (1..128 characters)." }),
    newPassword: newPasswordField.openapi({ example: "a much longer passphrase", description: "8..128 characters." }),
  })
  .openapi("ChangePasswordRequest");
