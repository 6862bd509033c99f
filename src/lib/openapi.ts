import { createRoute, type RouteConfig, z } from "@hono/zod-openapi";
import { requireAuth } from "../middlewares/auth";
import { type ErrorStatus, GENERIC_ERROR_MESSAGES } from "./errors";

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

export const EXAMPLE_TIMESTAMP = "2026-01-15T10:30:00.000Z";

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
export const jsonSuccess = <T extends z.ZodType>(data: T, statusCode: 200 | 201, description: string) => ({
  description,
  content: { "application/json": { schema: envelope(data, statusCode) } },
});

/** `components.responses` for every error status, registered once by the app. */
export function errorResponseComponents() {
  return Object.entries(GENERIC_ERROR_MESSAGES).map(([status, message]) => {
    const code = Number(status) as ErrorStatus;
    return {
      name: ERROR_RESPONSE_NAMES[code],
      response: {
        description: message,
        ...(code === 429
          ? {
              headers: {
                "Retry-After": { description: "Seconds until a retry can succeed.", schema: { type: "integer" as const } },
                "X-RateLimit-Limit": { description: "Requests allowed in the window.", schema: { type: "integer" as const } },
                "X-RateLimit-Remaining": { description: "Requests left in the window.", schema: { type: "integer" as const } },
                "X-RateLimit-Reset": { description: "Seconds until the window resets.", schema: { type: "integer" as const } },
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

type RouteOptions = {
  /** Requires `Authorization: Bearer <access token>` (adds 401 and the security requirement). */
  auth: boolean;
  /** Error statuses the route can answer beyond those implied (400/413/415 for input, 401, 500). */
  errors?: readonly ErrorStatus[];
};

/**
 * createRoute plus the shared parts: the production warning on mutating operations, the
 * `JWT-auth` requirement, and a `$ref` to the error response of every status it can return.
 */
export function defineRoute<const R extends RouteConfig>(route: R, options: RouteOptions) {
  const statuses = new Set<ErrorStatus>(options.errors ?? []);
  statuses.add(500);
  if (options.auth) statuses.add(401);
  const request = route.request;
  if (request?.params || request?.query || request?.body || request?.headers) statuses.add(400);
  // The body guard reads any body sent with a mutating method, declared or not: 400 malformed_json, 413, 415.
  if (request?.body || MUTATING_METHODS.has(route.method)) {
    statuses.add(400);
    statuses.add(413);
    statuses.add(415);
  }
  const errorResponses = Object.fromEntries(
    [...statuses].sort().map((status) => [status, { $ref: `#/components/responses/${ERROR_RESPONSE_NAMES[status]}` }]),
  );
  const mutating = MUTATING_METHODS.has(route.method);
  const description = mutating ? [PRODUCTION_WARNING, route.description].filter(Boolean).join("\n\n") : route.description;
  return createRoute({
    ...route,
    description,
    security: options.auth ? [{ [SECURITY_SCHEME_NAME]: [] }] : [],
    middleware: options.auth ? [requireAuth, ...toArray(route.middleware)] : route.middleware,
    responses: { ...route.responses, ...errorResponses },
  } as R);
}
