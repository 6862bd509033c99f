import openapiTS, { astToString, COMMENT_HEADER, type OpenAPI3 } from "openapi-typescript";

/**
 * The typed client's types from an OpenAPI document. Lives in this package because
 * openapi-typescript drives the TypeScript 5 compiler API, which the project's TypeScript 7
 * (native) does not ship; this package pins its own TypeScript 5 for it.
 */
export async function generateTypes(doc: unknown): Promise<string> {
  // The local server's own URL is in `servers`; it must not make the output depend on the port.
  const { servers: _servers, ...portable } = doc as OpenAPI3;
  const ast = await openapiTS(portable as OpenAPI3, { alphabetize: true });
  return COMMENT_HEADER + astToString(ast);
}
