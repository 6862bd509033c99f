import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../lib/types";

/** Headers every response carries; API answers are never cached by browsers or proxies. */
export const securityHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  if (!c.res.headers.has("Cache-Control")) c.header("Cache-Control", "no-store");
};
