import type { Context } from "hono";
import { contextStorage } from "hono/context-storage";
import { HTTPException } from "hono/http-exception";
import pkg from "../package.json";
import { createRouter } from "./lib/create-router";
import { errorBody } from "./lib/envelope";
import { ApiError } from "./lib/errors";
import { log } from "./lib/log";
import {
  API_CONTACT,
  API_LICENSE,
  API_TAGS,
  errorEnvelopeSchema,
  errorResponseComponents,
  RATE_LIMITS_DESCRIPTION,
  SECURITY_SCHEME_NAME,
} from "./lib/openapi";
import type { AppEnv } from "./lib/types";
import { bodyGuard } from "./middlewares/body-guard";
import { addressBudget } from "./middlewares/rate-limit";
import { requestContext } from "./middlewares/request-context";
import { responseHeaders } from "./middlewares/response-headers";
import { adminRouter } from "./routes/admin/admin.index";
import { authRouter } from "./routes/auth/auth.index";
import { chatsRouter } from "./routes/chats/chats.index";
import { docsRouter } from "./routes/docs/docs.index";
import { messagesRouter } from "./routes/messages/messages.index";
import { realtimeRouter } from "./routes/realtime/realtime.index";
import { reconciliationRouter } from "./routes/reconciliation/reconciliation.index";
import { systemRouter } from "./routes/system/system.index";
import { usersRouter } from "./routes/users/users.index";
import { walletsRouter } from "./routes/wallets/wallets.index";
import { withTransferMaximum } from "./schemas/wallet";

/** Feature routers, mounted at the root: each declares its full paths in its createRoute calls. */
const featureRouters = [
  systemRouter,
  authRouter,
  usersRouter,
  chatsRouter,
  messagesRouter,
  walletsRouter,
  realtimeRouter,
  reconciliationRouter,
  adminRouter,
];

/** What the document names beside the routers' routes: the bearer scheme, the error responses, and the two routes served outside the routers. */
function registerDocumentOnly(registry: ReturnType<typeof createRouter>["openAPIRegistry"]): void {
  registry.registerComponent("securitySchemes", SECURITY_SCHEME_NAME, {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Paste the JWT access token without the Bearer prefix.",
  });
  registry.register("ErrorEnvelope", errorEnvelopeSchema);
  for (const { name, response } of errorResponseComponents()) {
    registry.registerComponent("responses", name, response);
  }

  // Served outside the router (the document itself and Swagger UI), listed so the document names every route.
  registry.registerPath({
    method: "get",
    path: "/openapi.json",
    operationId: "getOpenApiDocument",
    tags: ["Operations"],
    summary: "Get the OpenAPI document",
    description: "This document (OpenAPI 3.1): every route, its statuses and schemas, the `JWT-auth` scheme and the servers.",
    security: [],
    responses: {
      200: { description: "The OpenAPI document", content: { "application/json": { schema: { type: "object" } } } },
      429: { $ref: "#/components/responses/TooManyRequests" },
      500: { $ref: "#/components/responses/InternalServerError" },
    },
  });
  registry.registerPath({
    method: "get",
    path: "/docs",
    operationId: "openPlayground",
    tags: ["Operations"],
    summary: "Open the API playground",
    description:
      "Swagger UI on /openapi.json, served with its assets by the Worker (works offline). Authorize with an access token.",
    security: [],
    responses: {
      200: { description: "The playground page", content: { "text/html": { schema: { type: "string" } } } },
      429: { $ref: "#/components/responses/TooManyRequests" },
      500: { $ref: "#/components/responses/InternalServerError" },
    },
  });
}

/** Anything thrown becomes the envelope: an ApiError as it says, Hono's own refusals as 400/413/415, the rest 500 with the request id. */
function answerError(error: Error, c: Context<AppEnv>): Response {
  if (error instanceof ApiError) {
    for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
    return c.json(errorBody(error.status, error.code, error.details), error.status);
  }
  if (error instanceof HTTPException && error.status < 500) {
    // Hono's own refusals (e.g. a validator that could not read the body) keep the envelope too.
    const status = error.status === 413 ? 413 : error.status === 415 ? 415 : 400;
    const code = status === 413 ? "payload_too_large" : status === 415 ? "unsupported_media_type" : "malformed_json";
    return c.json(errorBody(status, code), status);
  }
  const requestIdValue = c.get("requestId") ?? "unknown";
  log.error("request_failed", { method: c.req.method, path: c.req.routePath, error });
  return c.json(errorBody(500, "internal_error", [`Request id ${requestIdValue}`]), 500);
}

export function createApp() {
  const app = createRouter();

  // First: the logger reads the request id of the request it is called in (lib/log.ts).
  app.use("*", contextStorage());
  app.use("*", responseHeaders);
  app.use("*", requestContext);
  app.use("*", bodyGuard);
  // The routers' routes count their budgets in a step (lib/openapi.ts); what is served beside them, here.
  app.use("/openapi.json", addressBudget);
  app.use("/docs/*", addressBudget);

  for (const router of featureRouters) app.route("/", router);
  app.route("/", docsRouter);

  registerDocumentOnly(app.openAPIRegistry);

  const documentObject = (c: Context<AppEnv>) => {
    const config = c.var.config;
    const servers = [
      { url: config.devBaseUrl, description: "Development" },
      { url: config.productionBaseUrl, description: "Production" },
    ];
    if (config.environment === "local") servers.unshift({ url: new URL(c.req.url).origin, description: "Local" });
    return {
      openapi: "3.1.0",
      info: {
        title: "credit-chat API",
        version: pkg.version,
        description: [
          "Chat with money: direct and group chats in which people send each other credits. Every response uses the envelope `{isSuccess, statusCode, data, errors, code?, timestamp}`. A request body is JSON (`application/json`, else 415), at most 64 KiB (else 413) and nested at most 64 levels deep (else 400 `validation_failed`).",
          RATE_LIMITS_DESCRIPTION,
        ].join("\n\n"),
        contact: API_CONTACT,
        license: API_LICENSE,
      },
      servers,
      tags: API_TAGS,
    };
  };
  // Served like doc31, plus this deployment's MAX_TRANSFER_AMOUNT as the documented maximum.
  app.get("/openapi.json", (c) =>
    c.json(withTransferMaximum(app.getOpenAPI31Document(documentObject(c)), c.var.config.maxTransferAmount)),
  );

  app.notFound((c) => c.json(errorBody(404, "not_found", [`No route for ${c.req.method} ${new URL(c.req.url).pathname}`]), 404));

  app.onError(answerError);

  return app;
}

export const app = createApp();
export type App = typeof app;
