import { createRoute, type RouteConfig, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { requireAdmin, requireAuth } from "../middlewares/auth";
import { parseKeyStep } from "../middlewares/idempotency";
import { groupAddsStep, rateLimitStep, signInStep, userBudget } from "../middlewares/rate-limit";
import { idempotencyHeadersSchema, replayedResponseHeader } from "../schemas/idempotency";
import type { RateLimitScope } from "../services/rate-limit";
import { EXAMPLE_TIMESTAMP } from "./envelope";
import { type ErrorStatus, GENERIC_ERROR_MESSAGES } from "./errors";
import type { AppEnv, RouteStep } from "./types";

/**
 * One place for what every route's OpenAPI description shares: the envelope, the error
 * responses (components with the seed's example bodies), the bearer scheme and the production
 * warning. Routes are declared with `defineRoute`, so none of this is written twice.
 */
export const SECURITY_SCHEME_NAME = "JWT-auth";

export const PRODUCTION_WARNING = [
  "**Production uyarisi:** Bu endpoint veri degistirir veya operasyon tetikleyebilir. API Playground icinde Production server seciliyse gercek production verisi etkilenir; test icin Development server kullanin.",
  "**Production warning:** this endpoint changes data or triggers operations. With the Production server selected in the playground, real production data is affected; use the Development server to try things out.",
].join("\n\n");

/**
 * For the descriptions of the routes that refuse an ended session's access token at once
 * (README, "Sessions"); every other route accepts it until it expires.
 */
export const SESSION_ENDED_NOTE =
  "**Ended sessions:** an access token whose session ended (logout, logout-all, password change, refresh-token reuse) is refused here at once with 401 `session_ended`, although most other routes accept it until it expires (15 minutes).";

/** What every admin route's check does (src/services/admin-access.ts), written once into each. */
export const ADMIN_CHECK_NOTE = [
  "**Admin check:** the caller's role, status and session are asked of their owner, the caller's account, on every request, whatever the token says (an operator's role change with `npm run admin` holds from the next request): not an admin (or no longer) → 403 `insufficient_permissions`; a suspended admin → 403 `account_suspended`; nobody lifts their own suspension (403 `insufficient_permissions`).",
  SESSION_ENDED_NOTE,
  "Every grant, suspension, reinstatement, reconciliation start and operator role change is recorded in the audit log (`GET /api/v1/admin/audit`).",
].join("\n\n");

/** The document's top-level tags: every operation names one of these (test/openapi.test.ts checks). */
export const API_TAGS = [
  { name: "Auth", description: "Registration, sign-in, token refresh and sign-out (access JWT + rotating refresh token)." },
  { name: "Users", description: "Profiles, user search, and blocking." },
  { name: "Chats", description: "Direct and group chat rooms, their members and read markers." },
  { name: "Messages", description: "Sending, listing, editing and deleting messages." },
  {
    name: "Credit transfers",
    description: "Sending credits inside a conversation: exactly once, as a `credit_transfer` message.",
  },
  { name: "Wallets", description: "The caller's balance, ledger, limits and transfers." },
  { name: "Admin", description: "Operations for admins only: grants, suspensions, reconciliation." },
  { name: "Realtime", description: "WebSocket push of chat and wallet events (tickets, then the socket)." },
  { name: "Operations", description: "Health, this document and the playground." },
];

// Placeholders on the project's example domain (like the servers' default URLs): set the real ones before publishing.
export const API_CONTACT = {
  name: "credit-chat API team",
  url: "https://credit-chat.example.com/support",
  email: "api@credit-chat.example.com",
};
export const API_LICENSE = { name: "Proprietary", url: "https://credit-chat.example.com/license" };

const ERROR_RESPONSE_NAMES: Record<ErrorStatus, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  413: "PayloadTooLarge",
  415: "UnsupportedMediaType",
  426: "UpgradeRequired",
  429: "TooManyRequests",
  500: "InternalServerError",
};

const ERROR_EXAMPLE_CODES: Record<ErrorStatus, string> = {
  400: "validation_failed",
  401: "authentication_required",
  403: "insufficient_permissions",
  404: "not_found",
  409: "already_exists",
  413: "payload_too_large",
  415: "unsupported_media_type",
  426: "upgrade_required",
  429: "rate_limited",
  500: "internal_error",
};

export const errorEnvelopeSchema = z
  .object({
    isSuccess: z.literal(false),
    statusCode: z.number().int(),
    data: z.null(),
    errors: z
      .array(z.string())
      .min(1)
      .openapi({ description: "errors[0] is the generic sentence for the status; later entries are specifics." }),
    code: z.string().openapi({ description: "Stable snake_case error code.", example: "validation_failed" }),
    timestamp: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
  })
  .openapi("ErrorEnvelope");

/** The success envelope around a route's `data` schema. */
export const envelope = <T extends z.ZodType>(data: T, statusCode: number) =>
  z.object({
    isSuccess: z.literal(true),
    statusCode: z.literal(statusCode).openapi({ type: "integer", enum: [statusCode] }),
    data,
    errors: z.null(),
    timestamp: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
  });

/** The `responses` entry of a success status: envelope + schema + example. */
export const jsonSuccess = <T extends z.ZodType>(data: T, statusCode: 200 | 201 | 202, description: string) => ({
  description,
  content: { "application/json": { schema: envelope(data, statusCode) } },
});

const integerHeader = (description: string) => ({ description, schema: { type: "integer" as const, minimum: 0 } });

/** Sent by every rate-limited operation, on its successes and on its 429. */
export const RATE_LIMIT_RESPONSE_HEADERS = {
  "X-RateLimit-Limit": integerHeader("Requests allowed in the sliding minute."),
  "X-RateLimit-Remaining": integerHeader("Requests left in the window."),
  "X-RateLimit-Reset": integerHeader("Seconds until a slot frees up."),
};

/** What every operation's 429 means (the API description's "Rate limits" says the same at length). */
export const RATE_LIMITED_DESCRIPTION =
  "A per-minute limit or request budget is used up: `code` is `rate_limited` and `Retry-After` gives the whole seconds to wait. Every request counts against the caller's client-address budget before anything else is done (authentication included), and every authenticated one also against the account's budget right after its token is checked (before the admin check, validation and the operation): refused requests (400, 401, 403, 404) count like any other. Those budgets answer `Retry-After` only. Operations with an exact limit (sign-in, registration, refresh, password change, message sends, credit transfers, adding people to groups, the replay allowance) also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.";

/** The document's own account of the limits (API.md §1), beside each operation's 429. */
export const RATE_LIMITS_DESCRIPTION = [
  "**Rate limits.** Every request has a coarse per-minute budget per client address (`CF-Connecting-IP`; IPv6 addresses counted by their /64), counted before anything else, and every authenticated one also a budget per account, counted right after the token is checked and before the admin check, validation and the operation; so no single address or account can load the shared database for everyone, and refused requests (a stream of 401s or 403s) meet 429 like any other (defaults: 3,000 requests per address and 600 per account per minute). Over a budget: 429 `rate_limited` with `Retry-After` (whole seconds).",
  "**Replays.** Over the account budget, a request carrying an `Idempotency-Key` on a keyed operation (credit transfers, message sends, grants) draws on a separate per-user replay allowance instead (`RATE_LIMIT_REPLAYS_PER_MINUTE`, default 300 a minute; exact, with `X-RateLimit-*`): a client retrying a lost answer still gets its stored outcome, and past the allowance it is 429 too, so no replay loop is free. A new key inside the allowance runs under the operation's own limits.",
  "Exact limits, with `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` on every counted answer: failed sign-ins, 10 per email and client address and 50 per email alone, a sign-in carrying the `deviceToken` of an earlier sign-in being exempt from the latter (so strangers' wrong guesses cannot lock the owner out); 300 register/login/refresh/password-change requests per client address; 10 password changes per account; 120 message sends and 60 credit transfers per user; 200 people added to groups per user (an add, or each of a new group's `memberIds`). Each operation's description names its limits and the var that sets each.",
].join("\n\n");

/** `components.responses` for every error status, registered once by the app. */
export function errorResponseComponents() {
  return Object.entries(GENERIC_ERROR_MESSAGES).map(([status, message]) => {
    const code = Number(status) as ErrorStatus;
    return {
      name: ERROR_RESPONSE_NAMES[code],
      response: {
        description: code === 429 ? `${message}. ${RATE_LIMITED_DESCRIPTION}` : message,
        ...(code === 429
          ? {
              headers: {
                "Retry-After": integerHeader("Whole seconds until a retry can succeed."),
                ...RATE_LIMIT_RESPONSE_HEADERS,
              },
            }
          : {}),
        content: {
          "application/json": {
            schema: { $ref: "#/components/schemas/ErrorEnvelope" },
            example: {
              isSuccess: false,
              statusCode: code,
              data: null,
              errors: [message],
              code: ERROR_EXAMPLE_CODES[code],
              timestamp: EXAMPLE_TIMESTAMP,
            },
          },
        },
      },
    };
  });
}

const toArray = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

const MUTATING_METHODS = new Set(["post", "put", "patch", "delete"]);

/**
 * An exact per-minute limit counted where the route says: by a step (`scope`; `"signIn"`: failed
 * sign-ins per email + address and per email), by the wallet object (transfers) or by the chat
 * object (message sends, per sender in each chat).
 */
export type RateLimitRule = RateLimitScope | "signIn" | { scope: RateLimitScope; countedBy: "wallet" | "chat" };

export type RouteOptions = {
  /**
   * Who may call: `"none"`; `"user"` (bearer access token: 401, `JWT-auth`); `"admin"` (also 403
   * `insufficient_permissions` for others). Checked before the request is validated; an admin
   * route whose outcome the wallet keeps (`idempotent: "wallet"`) checks the role in its handler.
   */
  auth: "user" | "admin" | "none";
  /**
   * `Idempotency-Key` (API.md §1), `"wallet"`: the caller's wallet object registers the key, and
   * the object that executes keeps the outcome (a wallet for transfers and grants, the chat for
   * message sends) and answers a stored one before any other check; the step only parses the key
   * (`c.var.idempotencyKey`). Documents the header with its bounds, `Idempotent-Replayed`, 400 and 409.
   */
  idempotent?: "wallet";
  /**
   * Exact per-minute limits, in order; each documents the X-RateLimit-* headers on the successes.
   * (Every route also gets the coarse budgets and so documents 429 whatever this says.)
   */
  rateLimit?: readonly RateLimitRule[];
  /** With `auth: "admin"`: the route lifts the suspension of the path's `userId`; the caller's own is refused (403). */
  liftsSuspension?: true;
  /** Error statuses the handler's own rules answer, beyond those the options and the input imply. */
  errors?: readonly ErrorStatus[];
};

/** The post-validation steps each route's options installed, found by `createRouter` (lib/create-router.ts). */
const ROUTE_STEPS = new WeakMap<object, RouteStep[]>();
export const routeSteps = (route: object): RouteStep[] => ROUTE_STEPS.get(route) ?? [];

const withHeaders = (response: unknown, headers: Record<string, unknown>) =>
  Object.keys(headers).length > 0 && typeof response === "object" && response !== null && !("$ref" in response)
    ? { ...response, headers: { ...(response as { headers?: object }).headers, ...headers } }
    : response;

/** The auth middlewares a route's options install, with the statuses they answer. */
function authMiddleware(options: RouteOptions, statuses: Set<ErrorStatus>): MiddlewareHandler<AppEnv>[] {
  if (options.auth === "none") return [];
  statuses.add(401);
  // The user budget right after the token is verified: before the admin check, validation and the handler.
  const keptByWallet = options.idempotent === "wallet";
  const authenticated = [requireAuth, userBudget({ replayable: keptByWallet })];
  if (options.auth !== "admin") return authenticated;
  statuses.add(403);
  // A wallet-kept outcome answers its key before the admin check (API.md §1): with a key, the
  // handler hands the check's refusal to the wallet (services/wallets.ts grantCredits).
  return [...authenticated, requireAdmin({ liftsSuspension: options.liftsSuspension === true, keptByWallet })];
}

/** The statuses only the handler's rules answer; what the options and input imply is never listed by hand (so it cannot drift). */
function addHandlerErrors(operationId: string, options: RouteOptions, statuses: Set<ErrorStatus>): void {
  const listedByHand = (options.errors ?? []).filter((status) => statuses.has(status));
  if (listedByHand.length > 0) {
    throw new Error(`${operationId}: errors ${listedByHand.join(", ")} are implied by its options or input; leave them out`);
  }
  for (const status of options.errors ?? []) statuses.add(status);
}

/**
 * createRoute plus what the options imply, installed and documented in one place: auth
 * middlewares and the `JWT-auth` requirement, idempotency and rate-limit steps with their
 * headers, a `$ref` to the error response of every status the route can return, and the
 * production warning on mutating operations. Every operation names its `operationId`.
 */
export function defineRoute<const R extends RouteConfig & { operationId: string }>(route: R, options: RouteOptions) {
  // 429: the coarse budgets (per client address, and per user when signed in) are on every route.
  const statuses = new Set<ErrorStatus>([429, 500]);
  const middleware = authMiddleware(options, statuses);
  let successHeaders: Record<string, unknown> = {};
  let headersSchema = route.request?.headers;
  if (options.idempotent) {
    statuses.add(400);
    statuses.add(409);
    headersSchema = idempotencyHeadersSchema;
    successHeaders = { ...successHeaders, ...replayedResponseHeader };
  }
  // The key's parsing, then the exact limits (the coarse budgets ran before: app.ts, authMiddleware).
  const steps: RouteStep[] = options.idempotent ? [parseKeyStep] : [];
  for (const rule of options.rateLimit ?? []) {
    if (rule === "signIn") steps.push(signInStep);
    else if (rule === "groupAdds") steps.push(groupAddsStep);
    else if (typeof rule === "string") steps.push(rateLimitStep(rule));
    successHeaders = { ...successHeaders, ...RATE_LIMIT_RESPONSE_HEADERS };
  }
  const request =
    route.request || headersSchema ? { ...route.request, ...(headersSchema ? { headers: headersSchema } : {}) } : undefined;
  if (request?.params || request?.query || request?.body || request?.headers) statuses.add(400);
  // The body guard reads any body sent with a mutating method, declared or not: 400 malformed_json, 413, 415.
  const mutating = MUTATING_METHODS.has(route.method);
  if (request?.body || mutating) {
    statuses.add(400);
    statuses.add(413);
    statuses.add(415);
  }
  addHandlerErrors(route.operationId, options, statuses);
  const successResponses = Object.fromEntries(
    Object.entries(route.responses).map(([status, response]) => [
      status,
      status.startsWith("2") ? withHeaders(response, successHeaders) : response,
    ]),
  );
  const errorResponses = Object.fromEntries(
    [...statuses].sort().map((status) => [status, { $ref: `#/components/responses/${ERROR_RESPONSE_NAMES[status]}` }]),
  );
  const description = [
    mutating ? PRODUCTION_WARNING : undefined,
    route.description,
    options.auth === "admin" ? ADMIN_CHECK_NOTE : undefined,
  ]
    .filter(Boolean)
    .join("\n\n");
  const defined = createRoute({
    ...route,
    ...(request ? { request } : {}),
    description,
    security: options.auth === "none" ? [] : [{ [SECURITY_SCHEME_NAME]: [] }],
    middleware: [...middleware, ...toArray(route.middleware)],
    responses: { ...successResponses, ...errorResponses },
  } as R);
  ROUTE_STEPS.set(defined, steps);
  return defined;
}
