import { Hono } from "hono";
import swaggerCss from "swagger-ui-dist/swagger-ui.css";
import swaggerBundle from "swagger-ui-dist/swagger-ui-bundle.js";
import type { Config } from "../../lib/config";
import { SECURITY_SCHEME_NAME } from "../../lib/openapi";
import type { AppEnv } from "../../lib/types";

/**
 * Swagger UI on /openapi.json, with its assets served by the Worker itself (no CDN), the server
 * dropdown from the document's `servers`, "Authorize" remembered across reloads, and the bearer
 * token taken from the answer of any sign-in operation executed in it.
 */
const ASSET_CACHE = "public, max-age=86400";

/** Operations that answer a session (`data.accessToken`): register, login, refresh, password change. */
export const SESSION_PATHS = ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/password"];

/**
 * The playground's own script, served as a file rather than inline so the page's
 * Content-Security-Policy allows scripts from this origin only ('self', no 'unsafe-inline', no hash
 * to keep in step with the text). Executing one of SESSION_PATHS authorizes the playground with
 * the access token it answered (persisted like "Authorize"), so nobody copies a token by hand.
 */
const playgroundScript = `"use strict";
const SESSION_PATHS = ${JSON.stringify(SESSION_PATHS)};
function authorizeFrom(response) {
  try {
    if (!response.ok || !SESSION_PATHS.includes(new URL(response.url, location.href).pathname)) return;
    const body = response.obj || (typeof response.body === "object" ? response.body : JSON.parse(response.text));
    const token = body && body.data && body.data.accessToken;
    if (typeof token !== "string") return;
    window.ui.preauthorizeApiKey(${JSON.stringify(SECURITY_SCHEME_NAME)}, token);
    window.ui.authActions.persistAuthorizationIfNeeded();
  } catch (error) {
    console.warn("playground: could not authorize from the response", error);
  }
}
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  tryItOutEnabled: true,
  validatorUrl: null,
  responseInterceptor: (response) => {
    authorizeFrom(response);
    return response;
  },
});
`;

const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>credit-chat API playground</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/playground.js"></script>
</body>
</html>`;

/**
 * The page may load only its own files and may not be framed (clickjacking a signed-in
 * playground). Swagger UI's stylesheet draws its icons as data: images; "Try it out" calls this
 * origin or the document's other servers, so those origins are the only ones it may connect to.
 */
export function docsContentSecurityPolicy(config: Pick<Config, "devBaseUrl" | "productionBaseUrl">): string {
  const servers = [...new Set([config.devBaseUrl, config.productionBaseUrl].map((url) => new URL(url).origin))];
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ${servers.join(" ")}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export const docsRouter = new Hono<AppEnv>()
  .get("/docs", (c) => c.html(page, 200, { "Content-Security-Policy": docsContentSecurityPolicy(c.var.config) }))
  .get("/docs/", (c) => c.redirect("/docs", 301))
  .get("/docs/swagger-ui-bundle.js", (c) =>
    c.body(swaggerBundle, 200, { "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  )
  .get("/docs/playground.js", (c) =>
    c.body(playgroundScript, 200, { "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  )
  .get("/docs/swagger-ui.css", (c) =>
    c.body(swaggerCss, 200, { "Content-Type": "text/css; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  );
