import { eq } from "drizzle-orm";
import { z } from "zod";
import { createDb } from "../db/client";
import { users } from "../db/schema";
import type { AccountState } from "../durable-objects/wallet/account";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { ID_PATTERN } from "../lib/ids";

/**
 * The operator command (`npm run admin`, scripts/admin.ts) on the server side: it reaches the
 * deployment out of band, as a Workflow instance (workflows/admin-command-workflow.ts), because
 * the role it changes is owned by the user's object (ARCHITECTURE.md §11), which only the Worker
 * can call. `grant` / `revoke` change the role there (with its audit row, in one transaction; the
 * object's outboxes write the D1 index and the audit log); `show` reads the owner and changes
 * nothing. The directory's own facts (email, display name, creation time) come from D1, their owner.
 */

export const ADMIN_ACTIONS = ["show", "grant", "revoke"] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];

/** The instance's params, as the script sends them (checked: a Workflow can be triggered by hand). */
export const adminCommandParams = z.object({
  action: z.enum(ADMIN_ACTIONS),
  userId: z.string().regex(ID_PATTERN),
  /** The OS user who ran the command (the audit row's `detail.operator`). */
  operator: z.string().min(1).max(64),
  /** The command's run id: the audit row's `requestId`, and the instance's id. */
  runId: z.string().min(1).max(64),
});
export type AdminCommandParams = z.infer<typeof adminCommandParams>;

/** The account as the command prints it: role and status as their owner holds them now. */
export type AdminCommandAccount = {
  id: string;
  email: string | null;
  displayName: string | null;
  role: AccountState["role"];
  status: AccountState["status"];
  createdAt: number | null;
  /** The owner's version of the account facts (each role or status change is one more). */
  version: number;
};

/** The instance's output: the account after the command, or null when no registration opened one with this id. */
export type AdminCommandOutput = { account: AdminCommandAccount | null };

/**
 * One run of the command; safe to repeat (a Workflow retries a step that threw): a role already
 * set changes nothing and records nothing, so a retry after a change that committed is a no-op.
 */
export async function runAdminCommand(env: Env, params: AdminCommandParams): Promise<AdminCommandOutput> {
  const owner = walletStub(env, params.userId);
  const state =
    params.action === "show"
      ? await owner.accountState()
      : await owner.setRole(params.userId, params.action === "grant" ? "admin" : "user", {
          operator: params.operator,
          runId: params.runId,
        });
  if (!state) return { account: null };
  const row = await createDb(env.DB)
    .select({ email: users.email, displayName: users.displayName, createdAt: users.createdAt })
    .from(users)
    .where(eq(users.id, params.userId))
    .get();
  return {
    account: {
      id: state.userId,
      email: row?.email ?? null,
      displayName: row?.displayName ?? null,
      role: state.role,
      status: state.status,
      createdAt: row?.createdAt ?? null,
      version: state.version,
    },
  };
}
