import { z } from "@hono/zod-openapi";
import { idSchema } from "../lib/ids";

const count = (example: number, description: string) => z.number().int().min(0).openapi({ example, description });

/** A chat migration run (README "Upgrading an existing deployment"; services/chat-migration/). */
export const chatMigrationSchema = z
  .object({
    id: idSchema("chat migration id"),
    status: z.enum(["running", "completed", "failed"]).openapi({
      example: "completed",
      description:
        "`running` until its last Workflow instance finishes; `completed`: every chat walked, nothing left to move; `failed`: an instance errored or was terminated (`error` says why). A failed run is finished by starting another: nothing moves twice.",
    }),
    instances: count(1, "Workflow instances of the run so far: each takes a bounded number of steps, then hands on to the next."),
    currentInstance: z.string().openapi({
      example: "64d15f9e2e6c8f4d5a123456",
      description: "The Workflow instance doing the work now (the run's id, then `<id>-2`, `<id>-3`, …).",
    }),
    keys: count(12, "Message-send Idempotency-Keys stored in their chats (totals of the finished instances)."),
    walletKeys: count(12, "Those keys registered with their owners' wallets."),
    chats: count(40, "Chats walked (a run walks every chat; a successor walks again the page it starts in)."),
    markers: count(0, "Read markers moved forward from the directory."),
    messages: count(100_000, "Messages stored in their chat objects (0 on a second run)."),
    strays: count(0, "D1 messages above their chat's moved range, left behind: drop nothing while this is above 0."),
    steps: count(205, "Workflow steps taken."),
    legacyGone: z
      .boolean()
      .openapi({ example: false, description: "D1's `messages` table was already dropped: nothing to move." }),
    error: z.string().nullable().openapi({ example: null, description: "Why a failed run failed." }),
  })
  .openapi("ChatMigration");

export type ChatMigration = z.infer<typeof chatMigrationSchema>;
