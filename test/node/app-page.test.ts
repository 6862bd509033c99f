import { mkdirSync } from "node:fs";
import path from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CHROMIUM, CHROMIUM_ARGS } from "../e2e/support/chromium.ts";
import { type LocalServer, startServer } from "../e2e/support/server.ts";

/**
 * The /app page in Debian's Chromium, two people in two browser contexts: A's message and a
 * 25-credit transfer appear on B's page and B's balance changes without a reload; then B goes
 * offline while A sends 20 messages, and back online B's page shows all 20, once each, in order.
 * Every request the pages make must go to the local server (no CDN). The screenshot the README
 * shows is written where APP_SCREENSHOT says (default: the git-ignored test-results/).
 */
const ROOT = path.resolve(import.meta.dirname, "../..");
const SCREENSHOT = path.resolve(ROOT, process.env.APP_SCREENSHOT ?? "test-results/app.png");

let server: LocalServer | undefined;
let browser: Browser | undefined;
const foreign: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  server = await startServer();
  // playwright gives each launch a fresh temporary profile (its own --user-data-dir).
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

async function person(name: string): Promise<{ context: BrowserContext; page: Page; email: string }> {
  const context = await (browser as Browser).newContext({ viewport: { width: 1100, height: 720 } });
  await context.route("**/*", (route) => {
    if (
      route
        .request()
        .url()
        .startsWith(server?.baseUrl ?? "")
    )
      return route.continue();
    foreign.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`${name}: ${error.message}`));
  const email = `${name.toLowerCase()}-${Date.now()}@example.com`;
  await page.goto(`${server?.baseUrl}/app`);
  await page.fill("#login-form [name=email]", email);
  await page.fill("#login-form [name=password]", "password-123");
  await page.fill("#login-form [name=displayName]", name);
  await page.click("#login-form button[value=register]");
  await page.locator("#connection", { hasText: "open" }).waitFor();
  return { context, page, email };
}

async function send(page: Page, content: string) {
  await page.fill("#message-form [name=content]", content);
  await page.press("#message-form [name=content]", "Enter");
}

/** The texts of a page's confirmed messages, in the order shown. */
const shown = (page: Page) => page.locator("#messages li[data-seq]").allTextContents();

it("two people chat and pay live, and an offline reader catches up on every message once, in order", async () => {
  const a = await person("Alice");
  const b = await person("Bob");
  await expect.poll(() => b.page.textContent("#balance")).toBe("100");

  // A opens the chat with B and writes; B's list gets the chat with one unread, live.
  await a.page.fill("#new-chat-form [name=who]", b.email);
  await a.page.press("#new-chat-form [name=who]", "Enter");
  await a.page.locator("#chat-title", { hasText: "Bob" }).waitFor();
  await send(a.page, "hello Bob");
  await b.page.locator("#chats li", { hasText: "Alice" }).locator("[data-testid=unread]", { hasText: "1" }).waitFor();
  await b.page.click("#chats li >> text=Alice");
  await expect.poll(() => shown(b.page)).toEqual(["hello Bob"]);

  // 25 credits: the transfer message and B's new balance arrive without a reload; A gets a receipt.
  await a.page.fill("#credits-form [name=amount]", "25");
  await a.page.click("#send-credits");
  await a.page.locator("#receipt[data-status=posted]").waitFor();
  expect(await a.page.textContent("#receipt")).toContain("25 credits to Bob · posted");
  await expect.poll(() => b.page.textContent("#balance")).toBe("125");
  await expect.poll(() => shown(b.page)).toEqual(["hello Bob", "💸 25 credits"]);
  await expect.poll(() => a.page.textContent("#balance")).toBe("75");

  // B offline while A sends 20; back online, B's page shows all 20 once, in order.
  await b.context.setOffline(true);
  const burst = Array.from({ length: 20 }, (_, i) => `while you were away ${i + 1}`);
  for (const text of burst) await send(a.page, text);
  await expect.poll(() => shown(a.page), { timeout: 30_000 }).toEqual(["hello Bob", "💸 25 credits", ...burst]);
  await b.context.setOffline(false);
  await expect.poll(() => shown(b.page), { timeout: 60_000 }).toEqual(["hello Bob", "💸 25 credits", ...burst]);
  await expect.poll(() => b.page.textContent("#connection"), { timeout: 30_000 }).toBe("open");
  // What B's open chat shows is read: no unread badge on it.
  await expect.poll(() => b.page.locator("#chats li.open [data-testid=unread]").count()).toBe(0);

  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await b.page.screenshot({ path: SCREENSHOT });
  expect(foreign).toEqual([]);
  expect(pageErrors).toEqual([]);
}, 240_000);
