import { Hono } from "hono";
import swaggerCss from "swagger-ui-dist/swagger-ui.css";
import swaggerBundle from "swagger-ui-dist/swagger-ui-bundle.js";
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
  <script>
    // Executing one of these from the playground authorizes the playground with the access token it
    // answered (persisted like "Authorize"), so nobody copies a token by hand.
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
  </script>
</body>
</html>`;

export const docsRouter = new Hono<AppEnv>()
  .get("/docs", (c) => c.html(page))
  .get("/docs/", (c) => c.redirect("/docs", 301))
  .get("/docs/swagger-ui-bundle.js", (c) =>
    c.body(swaggerBundle, 200, { "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  )
  .get("/docs/swagger-ui.css", (c) =>
    c.body(swaggerCss, 200, { "Content-Type": "text/css; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  );
