import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep, type WorkflowStepConfig } from "cloudflare:workers";
import { z } from "zod";
import { type AdminCommandOutput, adminCommandParams, runAdminCommand } from "../services/admin-command";

/**
 * `npm run admin -- show|grant|revoke` as a Cloudflare Workflow: the operator's way into a
 * deployment (`wrangler workflows trigger`, locally against `wrangler dev`), so the role is
 * changed by its owner, the user's object, and never written into D1 behind it. One step; the
 * engine keeps its result (the account after the command), which the script reads back with
 * `wrangler workflows instances describe`.
 */
const STEP_CONFIG = {
  retries: { limit: 3, delay: "1 second", backoff: "exponential" },
  timeout: "30 seconds",
} satisfies WorkflowStepConfig;

export class AdminCommandWorkflow extends WorkflowEntrypoint<Env, unknown> {
  override async run(event: Readonly<WorkflowEvent<unknown>>, step: WorkflowStep): Promise<AdminCommandOutput> {
    const parsed = adminCommandParams.safeParse(event.payload);
    // Bad params fail the instance at once (outside any step, so nothing retries them), and touch nothing.
    if (!parsed.success) throw new Error(`invalid admin command: ${z.prettifyError(parsed.error)}`);
    const params = parsed.data;
    return step.do(`${params.action} ${params.userId}`, STEP_CONFIG, () => runAdminCommand(this.env, params));
  }
}
