import { defineConfig } from "drizzle-kit";

// Generates SQL migrations for D1 from the Drizzle schema; wrangler applies them.
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/db/schema.ts",
  out: "./migrations",
});
