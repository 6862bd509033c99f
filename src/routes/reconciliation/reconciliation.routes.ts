import { z } from "@hono/zod-openapi";
import { idSchema } from "../../lib/ids";
import { defineRoute, envelope, jsonSuccess } from "../../lib/openapi";
import { reconciliationRunSchema, reconciliationSchema } from "../../schemas/wallet";

/** jsonSuccess for 202 (a run accepted and still running). */
const accepted = <T extends z.ZodType>(data: T, description: string) => ({
  description,
  content: { "application/json": { schema: envelope(data, 202) } },
});

const ADMIN_ONLY = "Admins only (403 `insufficient_permissions` otherwise).";

const HOW_A_RUN_WORKS =
  "A run is a Cloudflare Workflow that walks every wallet in pages of 200, reading each wallet's running totals (O(1)), pairs each page's transfers with their `credit_transfer` messages by sender and by recipient, drills into any wallet whose aggregates differ, and re-reads every suspicious transfer (sender, then recipient, then message) before reporting it: a transfer in flight is never a discrepancy. Totals are those of the run's cut (`cutoffAt`), so traffic during the run does not move them. Runs also start daily on the Cron Trigger.";

export const startReconciliation = defineRoute(
  {
    method: "post",
    path: "/api/v1/admin/reconciliations",
    operationId: "startReconciliation",
    tags: ["Admin"],
    summary: "Start a reconciliation run",
    description: [
      ADMIN_ONLY,
      "Starts a run and answers 202 with it (`status: running`); follow it at `GET /api/v1/admin/reconciliations/{runId}`. One run at a time: while one is running, this answers 200 with that run and starts nothing.",
      HOW_A_RUN_WORKS,
    ].join("\n\n"),
    responses: {
      200: jsonSuccess(reconciliationRunSchema, 200, "A run was already in progress: that run"),
      202: accepted(reconciliationRunSchema, "The run was started"),
    },
  },
  { auth: "admin" },
);

export const getReconciliationRun = defineRoute(
  {
    method: "get",
    path: "/api/v1/admin/reconciliations/{runId}",
    operationId: "getReconciliationRun",
    tags: ["Admin"],
    summary: "Get a reconciliation run",
    description: [
      ADMIN_ONLY,
      "A run's progress while it runs (`walletsChecked`, `pagesDone`, discrepancies confirmed so far) and its report once `completed`; a `failed` run says why in `error`. 404 `not_found` for an unknown run.",
    ].join("\n\n"),
    request: { params: z.object({ runId: idSchema("reconciliation run id") }) },
    responses: { 200: jsonSuccess(reconciliationRunSchema, 200, "The run") },
  },
  { auth: "admin", errors: [404] },
);

export const getLatestReconciliation = defineRoute(
  {
    method: "get",
    path: "/api/v1/admin/reconciliation",
    operationId: "getLatestReconciliation",
    tags: ["Admin"],
    summary: "Get the latest reconciliation report",
    description: [
      ADMIN_ONLY,
      "The report of the latest completed run: the books checked end to end. `discrepancies` is empty when they are right.",
      "With no completed run in the last 24 hours, this starts one (or joins the one running) and waits up to 20 seconds: 200 with its report if it completes in time; otherwise 200 with the latest older report, and when there has never been one, 202 with the run (`ReconciliationRun`) to follow at `GET /api/v1/admin/reconciliations/{runId}`.",
      HOW_A_RUN_WORKS,
    ].join("\n\n"),
    responses: {
      200: jsonSuccess(reconciliationSchema, 200, "The latest report"),
      202: accepted(reconciliationRunSchema, "No report yet: the run that will produce it"),
    },
  },
  { auth: "admin" },
);
