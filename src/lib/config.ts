import { z } from "zod";
import { IDEMPOTENCY_RETENTION_MS } from "./idempotency";

/**
 * Every var and secret, parsed once per `env` object with zod. A bad value throws ConfigError,
 * which the app answers as 500 `internal_error` with a log line naming the var, so a misconfigured
 * Worker refuses to serve instead of behaving silently wrong.
 */
export const LOCAL_JWT_SECRET = "local-development-only-insecure-jwt-secret-do-not-deploy";

const integerVar = (min: number) => z.coerce.number().int().min(min).max(Number.MAX_SAFE_INTEGER);
const listVar = z
  .string()
  .default("")
  .transform((value) =>
    value
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean),
  );

const configSchema = z
  .object({
    ENVIRONMENT: z.enum(["local", "dev", "production"]),
    JWT_SECRET: z.string().optional(),
    // During a signing-key rotation: the key before JWT_SECRET, which still verifies (never signs).
    JWT_SECRET_PREVIOUS: z
      .string()
      .optional()
      .transform((value) => value || undefined),
    SIGNUP_CREDITS: integerVar(0),
    ADMIN_EMAILS: listVar.transform((emails) => emails.map((email) => email.toLowerCase())),
    MAX_TRANSFER_AMOUNT: integerVar(1),
    DAILY_TRANSFER_LIMIT: integerVar(1),
    DEV_BASE_URL: z.url(),
    PRODUCTION_BASE_URL: z.url(),
    CORS_ORIGINS: listVar,
    RATE_LIMIT_LOGIN_PER_MINUTE: integerVar(1),
    RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: integerVar(1),
    RATE_LIMIT_AUTH_IP_PER_MINUTE: integerVar(1),
    RATE_LIMIT_MESSAGES_PER_MINUTE: integerVar(1),
    RATE_LIMIT_TRANSFERS_PER_MINUTE: integerVar(1),
    // The coarse budgets (USER_BUDGET / ADDRESS_BUDGET bindings); "off" only where nobody is served.
    RATE_LIMIT_BUDGETS: z.enum(["on", "off"]).default("on"),
    TRANSFER_VOID_AFTER_SECONDS: integerVar(1),
    REALTIME_MAX_CONNECTIONS: integerVar(1),
    // Bounds a group's realtime fan-out and its system-message batches: an owner and one more at least.
    MAX_GROUP_MEMBERS: integerVar(2).default(200),
    // Caps on what one account makes (API.md: 409 `chat_limit_reached`), counted by the user's own object.
    MAX_CHATS_PER_USER: integerVar(1).default(1000),
    MAX_GROUPS_OWNED: integerVar(1).default(100),
  })
  .superRefine((vars, ctx) => {
    // Every transfer must end while its key is still kept: a void after the key expired would
    // leave a retry of that key free to pay a second time, and a pending key past retention
    // would keep the wallet's expiry alarm waking for nothing.
    if (vars.TRANSFER_VOID_AFTER_SECONDS * 1000 >= IDEMPOTENCY_RETENTION_MS) {
      ctx.addIssue({
        code: "custom",
        path: ["TRANSFER_VOID_AFTER_SECONDS"],
        message: `must be below the Idempotency-Key retention (${IDEMPOTENCY_RETENTION_MS / 1000} s)`,
      });
    }
    if (vars.ENVIRONMENT === "local") return;
    // Outside local, admins are made only by an operator (`npm run admin`), never by registering an address.
    if (vars.ADMIN_EMAILS.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["ADMIN_EMAILS"],
        message: "must be empty outside local; make admins with `npm run admin -- grant --env <env> --email …`",
      });
    }
    if (vars.RATE_LIMIT_BUDGETS === "off") {
      ctx.addIssue({ code: "custom", path: ["RATE_LIMIT_BUDGETS"], message: 'may be "off" only in local' });
    }
    const weak = (secret: string) => secret === LOCAL_JWT_SECRET || new TextEncoder().encode(secret).length < 32;
    if (weak(vars.JWT_SECRET ?? "")) {
      ctx.addIssue({
        code: "custom",
        path: ["JWT_SECRET"],
        message: "must be set with `wrangler secret put JWT_SECRET` to at least 32 bytes (not the local default) outside local",
      });
    }
    if (vars.JWT_SECRET_PREVIOUS !== undefined && weak(vars.JWT_SECRET_PREVIOUS)) {
      ctx.addIssue({
        code: "custom",
        path: ["JWT_SECRET_PREVIOUS"],
        message: "when set, must be at least 32 bytes (not the local default) outside local",
      });
    }
  })
  .transform((vars) => ({
    environment: vars.ENVIRONMENT,
    jwtSecret: vars.JWT_SECRET ?? LOCAL_JWT_SECRET,
    jwtPreviousSecret: vars.JWT_SECRET_PREVIOUS ?? null,
    signupCredits: vars.SIGNUP_CREDITS,
    adminEmails: vars.ADMIN_EMAILS,
    maxTransferAmount: vars.MAX_TRANSFER_AMOUNT,
    dailyTransferLimit: vars.DAILY_TRANSFER_LIMIT,
    devBaseUrl: vars.DEV_BASE_URL,
    productionBaseUrl: vars.PRODUCTION_BASE_URL,
    corsOrigins: vars.CORS_ORIGINS,
    transferVoidAfterMs: vars.TRANSFER_VOID_AFTER_SECONDS * 1000,
    realtimeMaxConnections: vars.REALTIME_MAX_CONNECTIONS,
    maxGroupMembers: vars.MAX_GROUP_MEMBERS,
    maxChatsPerUser: vars.MAX_CHATS_PER_USER,
    maxGroupsOwned: vars.MAX_GROUPS_OWNED,
    rateLimits: {
      loginPerMinute: vars.RATE_LIMIT_LOGIN_PER_MINUTE,
      loginEmailPerMinute: vars.RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE,
      authIpPerMinute: vars.RATE_LIMIT_AUTH_IP_PER_MINUTE,
      messagesPerMinute: vars.RATE_LIMIT_MESSAGES_PER_MINUTE,
      transfersPerMinute: vars.RATE_LIMIT_TRANSFERS_PER_MINUTE,
      budgets: vars.RATE_LIMIT_BUDGETS === "on",
    },
  }));

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const cache = new WeakMap<object, Config>();

export function getConfig(env: Env): Config {
  const cached = cache.get(env);
  if (cached) return cached;
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  cache.set(env, parsed.data);
  return parsed.data;
}
