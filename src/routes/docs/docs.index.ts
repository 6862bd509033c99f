import { Hono } from "hono";
import swaggerCss from "swagger-ui-dist/swagger-ui.css";
import swaggerBundle from "swagger-ui-dist/swagger-ui-bundle.js";
import type { AppEnv } from "../../lib/types";

/**
 * Swagger UI on /openapi.json, with its assets served by the Worker itself (no CDN), the server
 * dropdown from the document's `servers`, and "Authorize" remembered across reloads.
 */
const ASSET_CACHE = "public, max-age=86400";

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
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      tryItOutEnabled: true,
      validatorUrl: null,
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
