import pkg from "../../../package.json";
import { createRouter } from "../../lib/create-router";
import { ok } from "../../lib/envelope";
import * as routes from "./system.routes";

export const systemRouter = createRouter().openapi(routes.health, (c) =>
  ok(c, { status: "ok" as const, environment: c.var.config.environment, version: pkg.version }, 200),
);
