/**
 * Debian's Chromium as the browser suites launch it (ARCHITECTURE.md §8): `npx playwright install`
 * cannot download a browser here, and these flags keep it from reaching any network but ours.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
