/**
 * Base URLs a deployed environment would set for itself (README, "Deploy"): outside local the
 * Worker refuses placeholder ones, so a test that serves as dev or production passes these.
 */
export const DEPLOYED_URLS = {
  DEV_BASE_URL: "https://credit-chat-dev.northwind-labs.workers.dev",
  PRODUCTION_BASE_URL: "https://api.creditchat.app",
} as const;
