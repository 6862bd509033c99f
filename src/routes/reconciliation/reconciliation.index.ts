import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { requireAdmin } from "../../middlewares/auth";
import { getRun, latestReport, startRun } from "../../services/reconciliation/runs";
import * as routes from "./reconciliation.routes";

export const reconciliationRouter = createRouter()
  .openapi(routes.startReconciliation, async (c) => {
    const admin = requireAdmin(c);
    const { run, created } = await startRun(c.env, "manual", admin.id);
    return created ? ok(c, run, 202) : ok(c, run, 200);
  })
  .openapi(routes.getReconciliationRun, async (c) => {
    requireAdmin(c);
    return ok(c, await getRun(c.env, c.req.valid("param").runId), 200);
  })
  .openapi(routes.getLatestReconciliation, async (c) => {
    const admin = requireAdmin(c);
    const latest = await latestReport(c.env, admin.id);
    return latest.status === 200 ? ok(c, latest.report, 200) : ok(c, latest.run, 202);
  });
