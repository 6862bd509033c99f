import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep, type WorkflowStepConfig } from "cloudflare:workers";
import { type RunParams, runReconciliation } from "../services/reconciliation/run";
import { markRunFailed } from "../services/reconciliation/runs";

/**
 * A reconciliation run as a Cloudflare Workflow: every step (a page of wallets, a drill, a
 * re-read, the finish) is persisted by the engine when it returns, retried when it throws, and
 * skipped on replay, so a run whose isolate dies or whose instance restarts resumes where it
 * stopped and ends with the same report (the steps read books at a fixed cut and store findings
 * idempotently).
 */
const STEP_CONFIG = {
  retries: { limit: 5, delay: "2 seconds", backoff: "exponential" },
  timeout: "5 minutes",
} satisfies WorkflowStepConfig;

export type ReconciliationOutput = {
  runId: string;
  wallets: number;
  discrepancyCount: number;
  steps: number;
  maxStepSubrequests: number;
};

export class ReconciliationWorkflow extends WorkflowEntrypoint<Env, RunParams> {
  override async run(event: Readonly<WorkflowEvent<RunParams>>, step: WorkflowStep): Promise<ReconciliationOutput> {
    const params = event.payload;
    try {
      const report = await runReconciliation(
        this.env,
        params,
        (name, fn) =>
          // Every step returns plain JSON-able data (numbers, strings, arrays, objects).
          step.do(name, STEP_CONFIG, fn as () => Promise<Rpc.Serializable<unknown>>) as ReturnType<typeof fn>,
      );
      return {
        runId: params.runId,
        wallets: report.sums.wallets,
        discrepancyCount: report.discrepancyCount,
        steps: report.steps,
        maxStepSubrequests: report.maxStepSubrequests,
      };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await step.do("fail", STEP_CONFIG, () => markRunFailed(this.env, params.runId, message));
      throw error;
    }
  }
}
