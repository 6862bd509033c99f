import { z } from "@hono/zod-openapi";
import { defineRoute, jsonSuccess } from "../../lib/openapi";

export const healthSchema = z
  .object({
    status: z.literal("ok"),
    environment: z.enum(["local", "dev", "production"]),
    version: z.string().openapi({ example: "0.1.0" }),
  })
  .openapi("Health");

export const health = defineRoute(
  {
    method: "get",
    path: "/health",
    operationId: "getHealth",
    tags: ["Operations"],
    summary: "Check service health",
    description: "Liveness of the Worker and the environment it serves.",
    responses: { 200: jsonSuccess(healthSchema, 200, "The service is up") },
  },
  { auth: "none" },
);
