import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import { listAudit } from "../../services/audit";
import * as routes from "./admin.routes";

// Admin only: declared `auth: "admin"` in the routes, so no handler checks the role.
export const adminRouter = createRouter().openapi(routes.listAudit, async (c) =>
  ok(c, await listAudit(c.var.db, c.req.valid("query")), 200),
);
