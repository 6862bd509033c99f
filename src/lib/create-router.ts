import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ApiError } from "./errors";
import { routeSteps } from "./openapi";
import type { AppEnv, RouteStep } from "./types";

/** Runs `steps` in order around `last` (each may answer itself instead of calling on). */
function runSteps(steps: readonly RouteStep[], c: Context<AppEnv>, last: () => Promise<Response>): Promise<Response> {
  const at = (i: number): Promise<Response> => {
    const step = steps[i];
    return step ? step(c, () => at(i + 1)) : last();
  };
  return at(0);
}

/**
 * Every router of the app: zod validation failures become the 400 envelope with one
 * `field: message` line per problem (the same hook everywhere), and each route's handler runs
 * after the steps its `defineRoute` options installed (idempotency, rate limits), which need
 * the validated request and so cannot be Hono route middleware (that runs before validation).
 */
export function createRouter() {
  const router = new OpenAPIHono<AppEnv>({
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
  const openapi = router.openapi;
  router.openapi = ((route, handler, hook) => {
    const steps = routeSteps(route);
    if (steps.length === 0) return openapi(route, handler, hook);
    const wrapped = (c: Context<AppEnv>, next: () => Promise<void>) =>
      runSteps(steps, c, async () => (await handler(c as never, next)) as Response);
    return openapi(route, wrapped as typeof handler, hook);
  }) as typeof router.openapi;
  return router;
}
