import { pageQuerySchema, pageSchema } from "../../lib/cursor";
import { defineRoute, jsonSuccess } from "../../lib/openapi";
import { auditEntrySchema } from "../../schemas/audit";

export const listAudit = defineRoute(
  {
    method: "get",
    path: "/api/v1/admin/audit",
    operationId: "listAdminAudit",
    tags: ["Admin"],
    summary: "List the admin audit log",
    description: [
      "Admins only (403 `insufficient_permissions` otherwise).",
      "Every admin action, newest first: each grant (`grant`, recorded once even when its `Idempotency-Key` is replayed), suspension (`suspension`), reinstatement (`reinstatement`), reconciliation start (`reconciliation_start`) and every role change made by the operator command (`role_grant`, `role_revoke`, actor `operator`, written with the change in one transaction by its owner, the user's object), with the admin who acted (`actorId`), what they acted on (`targetId`), what they said (`detail`) and the server's own id of the request (`requestId`: the `X-Request-Id` that request answered, never one the client chose). Entries are never changed or removed.",
      "Paginated with `limit` (1..100, default 50) and the opaque `cursor` from `nextCursor`.",
    ].join("\n\n"),
    request: { query: pageQuerySchema },
    responses: { 200: jsonSuccess(pageSchema(auditEntrySchema), 200, "A page of audit entries, newest first") },
  },
  { auth: "admin" },
);
