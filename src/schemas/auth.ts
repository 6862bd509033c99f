import { z } from "@hono/zod-openapi";
import { NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_MESSAGE, NO_CONTROL_CHARACTERS_NOTE } from "./text";
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
  // Control and format characters (schemas/text.ts) written as ranges in one pattern: with no
  // flags and no \p{…} it means the same in JSON Schema, so validating clients accept exactly
  // what the server accepts.
  .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
  .openapi({
    example: "Alice",
    description: `1..64 characters after trimming; shown to other users. ${NO_CONTROL_CHARACTERS_NOTE}`,
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

/** Any printable ASCII: a device token that no longer verifies (expired, another key) is ignored, never a 400. */
const deviceTokenField = z
  .string()
  .max(512, { message: "must be at most 512 characters" })
  .regex(/^[!-~]{1,512}$/, { message: "must be 1 to 512 printable ASCII characters" })
  .optional()
  .openapi({
    example: "dt1.1765094400.4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99.Jm6cQe7yX0WnS1l0b3N1cmVseS1ub3QtYS1yZWFsLW1hYw",
    description:
      "The `deviceToken` a sign-in or registration of this email answered on this device (valid 30 days). With it, the sign-in is not subject to the per-email ceiling that strangers' wrong guesses can fill: its failures count against the token instead. A token that does not verify (expired, another email or deployment) counts as none.",
  });

export const loginBodySchema = z
  .object({ email: emailField, password: passwordField, deviceToken: deviceTokenField })
  .openapi("LoginRequest");

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

/** A sign-in's (or registration's) session, with the device token the next sign-in sends back. */
export const signInSessionSchema = sessionSchema
  .extend({
    deviceToken: z.string().openapi({
      example: "dt1.1765094400.4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99.Jm6cQe7yX0WnS1l0b3N1cmVseS1ub3QtYS1yZWFsLW1hYw",
      description:
        "Keep it on this device and send it with the next `POST /api/v1/auth/login` of this email (30 days): that sign-in then gets through even while strangers' wrong guesses have filled the email's sign-in ceiling. Not a credential: it authorizes nothing by itself.",
    }),
  })
  .openapi("SignInSession");

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
