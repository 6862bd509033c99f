import { describe, expect, it } from "vitest";
import { call } from "./support/http";

/** The /app chat page (src/routes/app): served from the Worker, no external URL, a strict CSP, off unless APP_PAGE is "on". */
describe("/app", () => {
  it("serves the page, its script and stylesheet from the Worker under a CSP that allows only this origin", async () => {
    const page = await call("GET", "/app");
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toContain("text/html");
    expect(page.text).not.toMatch(/https?:\/\//);
    const csp = page.headers.get("Content-Security-Policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("connect-src 'self' ws://localhost");
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(assets).toEqual(["/app/app.css", "/app/app.js"]);
    const script = await call("GET", "/app/app.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("Content-Type")).toContain("javascript");
    // The bundled SDK: it asks for realtime tickets and sends Idempotency-Keys.
    expect(script.text).toContain("/api/v1/realtime/tickets");
    expect(script.text).toContain("Idempotency-Key");
    expect((await call("GET", "/app/app.css")).status).toBe(200);
  });

  it("answers 404 like any unknown route where APP_PAGE is not on (production's default)", async () => {
    for (const path of ["/app", "/app/app.js", "/app/app.css"]) {
      const res = await call("GET", path, { vars: { APP_PAGE: "off" } as Record<string, string> });
      expect(res.status, path).toBe(404);
      expect(res.json.code).toBe("not_found");
    }
  });
});
