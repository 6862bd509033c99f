import { register } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

/**
 * A second, independent client for the document: @hey-api/openapi-ts (fetch client, types and
 * SDK functions named from the operationIds). It drives the TypeScript 5 compiler API, but npm
 * hoists it next to the project's TypeScript 7 (which satisfies its peer range yet ships no such
 * API), so a resolve hook hands it this package's TypeScript 5 instead.
 */
const TYPESCRIPT_5 = pathToFileURL(path.join(import.meta.dirname, "node_modules/typescript/lib/typescript.js")).href;
register(
  `data:text/javascript,${encodeURIComponent(`
    export async function resolve(specifier, context, next) {
      if (specifier === "typescript" && context.parentURL?.includes("/@hey-api/")) return { url: ${JSON.stringify(TYPESCRIPT_5)}, shortCircuit: true, format: "commonjs" };
      return next(specifier, context);
    }`)}`,
);

/** Writes the client generated from `doc` into `outputDir` (client.gen.ts, types.gen.ts, sdk.gen.ts, …). */
export async function generateSdk(doc: unknown, outputDir: string): Promise<void> {
  const { createClient } = await import("@hey-api/openapi-ts");
  await createClient({
    input: doc as Record<string, unknown>,
    output: outputDir,
    plugins: ["@hey-api/client-fetch", "@hey-api/typescript", "@hey-api/sdk"],
    logs: { level: "silent" },
  });
}
