import { z } from "@hono/zod-openapi";
import { adminAudit } from "../db/schema";
import { EXAMPLE_TIMESTAMP } from "../lib/envelope";

/** The actions the audit log records (the Drizzle column's enum is the source of truth). */
export const AUDIT_ACTIONS = adminAudit.action.enumValues;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** What an action said, as recorded: `{amount, reason}`, `{reason}` or `{trigger}`. */
export type AuditDetail = Record<string, string | number | null>;

/** One entry of `GET /api/v1/admin/audit` (API.md). */
export const auditEntrySchema = z
  .object({
    id: z.string().openapi({ example: "64d15f9e2e6c8f4d5a123456", description: "For a grant, the grant's own id." }),
    actorId: z.string().openapi({
      example: "64d15f9e2e6c8f4d5a000001",
      description: "The admin who acted; `operator` for a role change made with the operator command (`npm run admin`).",
    }),
    action: z.enum(AUDIT_ACTIONS).openapi({ example: "grant" }),
    targetId: z.string().openapi({
      example: "64d15f9e2e6c8f4d5a654321",
      description: "The user granted, suspended, reinstated, made admin or unmade; the reconciliation run started.",
    }),
    detail: z.record(z.string(), z.union([z.string(), z.number(), z.null()])).openapi({
      example: { amount: 500, reason: "Launch bonus" },
      description:
        "What the action said: a grant `{amount, reason}`; a suspension `{reason}`; a reinstatement `{reason}` (null when none was given); a reconciliation start `{trigger}` (`manual`, or `auto` when reading the report started it); a role change (`role_grant`, `role_revoke`) `{role, previousRole, operator, via}`.",
    }),
    requestId: z.string().openapi({
      example: "5f0c6b7e-2f7c-4a8e-9a51-3a0b2c1d4e5f",
      description:
        "The server's own id of the request that acted: the `X-Request-Id` it answered, which the server chose (never the one the client sent), so it finds that request's log lines; for a role change, the operator command's run id (it prints it).",
    }),
    createdAt: z.string().openapi({ example: EXAMPLE_TIMESTAMP }),
  })
  .openapi("AuditEntry");

export type AuditEntry = z.infer<typeof auditEntrySchema>;
