import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Page } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "./support/chromium.ts";
import { loadDocument } from "./support/openapi.ts";

/**
 * The playground as a person uses it: Debian's Chromium opens /docs with every request that is
 * not for the local server blocked and counted (must stay zero: the page works offline), picks
 * the local server, registers from the playground (which authorizes itself with the answered
 * token: no "Authorize" click, and still authorized after a reload), and sends a credit transfer
 * from the UI (Try it out → edit the body → Execute) until the 201 body is on screen. The
 * screenshot the README shows is saved to docs/playground.png. Run by `npm run test:e2e`.
 */
const BASE_URL = process.env.E2E_BASE_URL ?? "";
if (!BASE_URL) throw new Error("E2E_BASE_URL is not set: run it with `npm run test:e2e`");
const ROOT = path.resolve(import.meta.dirname, "../..");
// The README's picture is refreshed on purpose (`E2E_SCREENSHOT=docs/playground.png npm run test:e2e`);
// ordinary runs write to the git-ignored test-results/ so they leave the tree clean.
const SCREENSHOT = path.resolve(ROOT, process.env.E2E_SCREENSHOT ?? "test-results/playground.png");
const TRANSFER_SUMMARY = "Send a credit transfer message";
const REGISTER_SUMMARY = "Register a new user";
const WARNING_EN = "Production warning: this endpoint changes data or triggers operations.";
const WARNING_TR = "Production uyarisi: Bu endpoint veri degistirir veya operasyon tetikleyebilir.";

async function post(pathname: string, body: unknown, token?: string) {
  const res = await fetch(`${BASE_URL}${pathname}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { data: Record<string, unknown> };
  assert.equal(res.status, 201, `${pathname}: ${JSON.stringify(json)}`);
  return json.data;
}

async function register(label: string) {
  const data = await post("/api/v1/auth/register", {
    email: `${label}.${process.pid}.${Date.now()}@browser.example.com`,
    password: "correct horse battery",
    displayName: `Browser ${label}`,
  });
  return { id: (data.user as { id: string }).id, token: data.accessToken as string };
}

/** Try it out → the JSON body → Execute on an open operation; the rendered status and body. */
async function execute(operation: Awaited<ReturnType<typeof openOperation>>, body?: unknown) {
  const tryOut = operation.locator("button.try-out__btn");
  if ((await tryOut.count()) && !/cancel/i.test(await tryOut.innerText())) await tryOut.click();
  if (body !== undefined) await operation.locator("textarea.body-param__text").fill(JSON.stringify(body, null, 2));
  await operation.locator("button.execute").click();
  const live = operation.locator(".live-responses-table");
  await live.waitFor({ timeout: 30_000 });
  const status = (await live.locator("tbody .response-col_status").first().innerText()).trim();
  const text = await live.locator(".response-col_description .microlight").first().innerText();
  return { live, status, text };
}

async function selectLocalServer(page: Page) {
  const select = page.locator(".servers select");
  await select.selectOption(BASE_URL);
  assert.equal(await select.inputValue(), BASE_URL);
}

/** The operation block whose summary is `summary`, expanded. */
async function openOperation(page: Page, summary: string) {
  const block = page.locator(".opblock").filter({ has: page.locator(".opblock-summary-description", { hasText: summary }) });
  assert.equal(await block.count(), 1, `exactly one operation "${summary}" in the playground`);
  if (!(await block.evaluate((el) => el.classList.contains("is-open")))) await block.locator(".opblock-summary").first().click();
  await block.locator(".opblock-body").waitFor();
  return block;
}

async function main() {
  const doc = await loadDocument(BASE_URL);
  const operations = Object.values(doc.paths).flatMap((methods) => Object.values(methods));
  const hasTransfer = operations.some((op) => op.summary === TRANSFER_SUMMARY);
  const hasRegister = Boolean(doc.paths["/api/v1/auth/register"]?.post);

  const userDataDir = mkdtempSync(path.join(tmpdir(), "credit-chat-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 1000 },
  });
  const blocked: string[] = [];
  const pageErrors: string[] = [];
  try {
    const origin = new URL(BASE_URL).origin;
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      blocked.push(url);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    // The page's Content-Security-Policy must not block anything it needs (a blocked script,
    // style, image or request is reported on the console, not thrown).
    page.on("console", (message) => {
      if (/Content Security Policy/i.test(message.text())) pageErrors.push(`CSP: ${message.text()}`);
    });

    await page.goto(`${BASE_URL}/docs`, { waitUntil: "load" });
    await page.locator(".swagger-ui .information-container .title").waitFor({ timeout: 30_000 });
    assert.match(await page.locator(".information-container .title").innerText(), /credit-chat API/);

    // The server dropdown: Development and Production are offered; requests go to the local one.
    const select = page.locator(".servers select");
    const options = await select.locator("option").allInnerTexts();
    assert.ok(
      options.some((text) => text.includes("Development")),
      `server options ${options.join(" | ")}`,
    );
    assert.ok(
      options.some((text) => text.includes("Production")),
      `server options ${options.join(" | ")}`,
    );
    await selectLocalServer(page);

    if (hasRegister) {
      // Register from the playground; nobody presses "Authorize": the answer's token authorizes it.
      assert.equal(await page.locator(".auth-wrapper .authorize.locked").count(), 0, "authorized before signing in");
      const registered = await execute(await openOperation(page, REGISTER_SUMMARY), {
        email: `sender.${process.pid}.${Date.now()}@browser.example.com`,
        password: "correct horse battery",
        displayName: "Browser Zoë 🚀",
      });
      assert.equal(registered.status, "201", `register from the playground:\n${registered.text}`);
      await page.locator(".auth-wrapper .authorize.locked").first().waitFor({ timeout: 10_000 });
      // Persisted like a manual Authorize: a reload keeps it.
      await page.reload({ waitUntil: "load" });
      await page.locator(".swagger-ui .information-container .title").waitFor({ timeout: 30_000 });
      await selectLocalServer(page);
      await page.locator(".auth-wrapper .authorize.locked").first().waitFor({ timeout: 10_000 });
    } else {
      console.warn("browser: POST /api/v1/auth/register is not served yet: self-authorization not exercised");
    }

    let operation: Awaited<ReturnType<typeof openOperation>>;
    let expectedStatus: string;
    let expectedText: RegExp;
    let executeBody: unknown;
    if (hasTransfer && hasRegister) {
      const recipient = await register("recipient");
      operation = await openOperation(page, TRANSFER_SUMMARY);
      const description = await operation.locator(".opblock-description-wrapper").first().innerText();
      assert.ok(description.includes(WARNING_TR), `Turkish production warning on the transfer operation:\n${description}`);
      assert.ok(description.includes(WARNING_EN), `English production warning on the transfer operation:\n${description}`);
      executeBody = { recipientId: recipient.id, amount: 25 };
      expectedStatus = "201";
      expectedText = /"transferredAmount":\s*25[\s\S]*"senderBalance":\s*75[\s\S]*"recipientBalance":\s*125/;
    } else {
      console.warn(`browser: "${TRANSFER_SUMMARY}" is not served yet: executing "Check service health" instead`);
      operation = await openOperation(page, "Check service health");
      expectedStatus = "200";
      expectedText = /"status":\s*"ok"/;
    }

    const { live, status, text: body } = await execute(operation, executeBody);
    assert.equal(status, expectedStatus, `status rendered by the playground, body:\n${body}`);
    assert.match(body.replace(/\s+/g, " "), expectedText);
    const requestUrl = await operation.locator(".request-url pre").first().innerText();
    assert.ok(requestUrl.startsWith(BASE_URL), `the playground sent to ${requestUrl}, not the local server`);

    // From the operation's header (method, path, warning) down to the rendered server response.
    const top = await operation.boundingBox();
    const bottom = await live.locator("tbody tr").first().boundingBox();
    const scrollY = await page.evaluate(() => window.scrollY);
    if (!top || !bottom) throw new Error("the operation or its response is not on the page");
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({
      path: SCREENSHOT,
      fullPage: true,
      clip: { x: top.x, y: top.y + scrollY, width: top.width, height: bottom.y + bottom.height - top.y },
    });

    assert.deepEqual(blocked, [], `requests outside the local server: ${blocked.join(", ")}`);
    assert.deepEqual(pageErrors, [], `errors on the page: ${pageErrors.join("; ")}`);
    console.log(
      `browser: ok — executed ${expectedStatus} from the playground at ${requestUrl}; requests blocked: ${blocked.length}; screenshot ${path.relative(ROOT, SCREENSHOT)}`,
    );
  } finally {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error("browser: FAIL", error);
  process.exitCode = 1;
});
