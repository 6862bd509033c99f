import type { MiddlewareHandler } from "hono";
import { createDb } from "../db/client";
import { getConfig } from "../lib/config";
import type { AppEnv } from "../lib/types";

/**
 * Builds the request context once per request: the parsed vars (a bad var answers 500 with a
 * log line naming it) and Drizzle on D1. Handlers read `c.var.config` and `c.var.db` and pass
 * plain values to services.
 */
export const requestContext: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.set("config", getConfig(c.env));
  c.set("db", createDb(c.env.DB));
  c.set("idempotencyKey", null);
  c.set("budgetRefusal", null);
  await next();
};
