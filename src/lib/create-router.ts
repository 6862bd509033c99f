import { OpenAPIHono } from "@hono/zod-openapi";
import { ApiError } from "./errors";
import type { AppEnv } from "./types";

/**
 * Every router of the app: zod validation failures become the 400 envelope with one
 * `field: message` line per problem (the same hook everywhere).
 */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const details = result.error.issues.map((issue) => {
          const field = issue.path.length > 0 ? issue.path.join(".") : result.target;
          return `${field}: ${issue.message}`;
        });
        throw new ApiError("validation_failed", details);
      }
    },
  });
}
