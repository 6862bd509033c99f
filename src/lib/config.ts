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

/** Top-level domains reserved for examples and tests (RFC 2606, RFC 6761), never a deployment's. */
const RESERVED_TLDS = new Set(["example", "invalid", "test", "localhost", "local"]);
/** Host labels that mark a URL as a placeholder someone forgot to replace. */
const PLACEHOLDER_LABEL = /^(example|placeholder|changeme|change-me|your-.*|.*-your-.*|xxx+|todo)$/;

/**
 * Why a base URL is no deployment's own (null: it may be): not https, or a host on an example
 * domain (`example.com`, `*.example.workers.dev`, …), a reserved TLD, a loopback host, or a label
 * such as `your-account`. Outside local the document's servers must be real, or "Try it out" in
 * /docs would send a login body or a token to a stranger's host.
 */
export function placeholderUrlProblem(value: string): string | null {
  const url = new URL(value);
  if (url.protocol !== "https:") return "must be an https URL outside local";
  const labels = url.hostname.toLowerCase().split(".");
  const tld = labels[labels.length - 1] ?? "";
  const loopback = url.hostname === "localhost" || /^127\.|^\[?::1\]?$|^0\.0\.0\.0$/.test(url.hostname);
  if (RESERVED_TLDS.has(tld) || loopback || labels.some((label) => PLACEHOLDER_LABEL.test(label))) {
    return `is a placeholder (${url.hostname}); set this deployment's real URL (README, "Deploy")`;
  }
  return null;
}

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
    // Set per deployment outside local (`wrangler secret put`, README "Deploy"); placeholders are refused below.
    DEV_BASE_URL: z.url({ message: 'must be an absolute URL, set for this deployment (README "Deploy")' }),
    PRODUCTION_BASE_URL: z.url({ message: 'must be an absolute URL, set for this deployment (README "Deploy")' }),
    CORS_ORIGINS: listVar,
    RATE_LIMIT_LOGIN_PER_MINUTE: integerVar(1),
    RATE_LIMIT_LOGIN_EMAIL_PER_MINUTE: integerVar(1),
    RATE_LIMIT_AUTH_IP_PER_MINUTE: integerVar(1),
    RATE_LIMIT_MESSAGES_PER_MINUTE: integerVar(1),
    RATE_LIMIT_TRANSFERS_PER_MINUTE: integerVar(1),
    // Over the user budget, keyed requests (replays of a lost answer) draw on this allowance instead.
    RATE_LIMIT_REPLAYS_PER_MINUTE: integerVar(1).default(300),
    // People one user may add to groups per minute (creation's memberIds count one each).
    RATE_LIMIT_GROUP_ADDS_PER_MINUTE: integerVar(1).default(200),
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
    // A full group must remain creatable in one request: its memberIds are counted all at once.
    if (vars.RATE_LIMIT_GROUP_ADDS_PER_MINUTE < vars.MAX_GROUP_MEMBERS - 1) {
      ctx.addIssue({
        code: "custom",
        path: ["RATE_LIMIT_GROUP_ADDS_PER_MINUTE"],
        message: "must be at least MAX_GROUP_MEMBERS - 1 (a full group is created in one request)",
      });
    }
    if (vars.ENVIRONMENT === "local") return;
    // Outside local, admins are made only by an operator (`npm run admin`), never by registering an address.
    if (vars.ADMIN_EMAILS.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["ADMIN_EMAILS"],
        message: "must be empty outside local; make admins with `npm run admin -- grant --env <env> --user-id …`",
      });
    }
    for (const name of ["DEV_BASE_URL", "PRODUCTION_BASE_URL"] as const) {
      const problem = placeholderUrlProblem(vars[name]);
      if (problem) ctx.addIssue({ code: "custom", path: [name], message: problem });
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
      replaysPerMinute: vars.RATE_LIMIT_REPLAYS_PER_MINUTE,
      groupAddsPerMinute: vars.RATE_LIMIT_GROUP_ADDS_PER_MINUTE,
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
