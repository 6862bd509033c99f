import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { currentActor } from "../../middlewares/auth";
import { getRun, latestReport, startRun } from "../../services/reconciliation/runs";
import * as routes from "./reconciliation.routes";

// Admin only: declared `auth: "admin"` in the routes, so no handler checks the role.
export const reconciliationRouter = createRouter()
  .openapi(routes.startReconciliation, async (c) => {
    const { run, created } = await startRun(c.env, "manual", currentActor(c));
    return created ? ok(c, run, 202) : ok(c, run, 200);
  })
  .openapi(routes.getReconciliationRun, async (c) => {
    return ok(c, await getRun(c.env, c.req.valid("param").runId), 200);
  })
  .openapi(routes.getLatestReconciliation, async (c) => {
    const latest = await latestReport(c.env, currentActor(c));
    return latest.status === 200 ? ok(c, latest.report, 200) : ok(c, latest.run, 202);
  });
