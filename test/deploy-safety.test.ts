import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import packageJson from "../package.json";
import { getConfig, placeholderUrlProblem } from "../src/lib/config";
import { BUDGET_PERIOD_SECONDS } from "../src/services/rate-limit";
import { DEPLOYED_URLS } from "./support/deployment";
import { call, expectError } from "./support/http";

/**
 * No path from a bare deploy to production (README, "Environments and deploy"): wrangler.toml as
 * wrangler resolves it (vitest.config.ts reads it with wrangler's own reader) and the npm scripts.
 */
const { local, dev, production } = env.TEST_WRANGLER_ENVIRONMENTS;
const scripts: Record<string, string> = packageJson.scripts;
/** Vars a deployed environment sets for itself (`wrangler secret put`), never committed for it. */
const PER_DEPLOYMENT = ["DEV_BASE_URL", "PRODUCTION_BASE_URL"];
const STRONG_SECRET = "s".repeat(48);

describe("deploy safety", () => {
  it("the top-level (local) Worker and the dev Worker are named apart from production", () => {
    expect(production.name).toBe("credit-chat");
    expect(local.name).not.toBe(production.name);
    expect(dev.name).not.toBe(production.name);
    expect(local.name).not.toBe(dev.name);
  });

  it("a bare `wrangler deploy` (the local settings) would be reachable nowhere: no workers.dev URL, no route", () => {
    expect(local.workersDev).toBe(false);
    expect(local.routes).toEqual([]);
    expect(local.route).toBeNull();
    expect(local.vars.ENVIRONMENT).toBe("local");
  });

  it("production vars stay safe: no admin emails, no signup credits, no CORS origins, its own ENVIRONMENT", () => {
    expect(production.vars.ENVIRONMENT).toBe("production");
    expect(production.vars.ADMIN_EMAILS).toBe("");
    expect(production.vars.SIGNUP_CREDITS).toBe("0");
    expect(production.vars.CORS_ORIGINS).toBe("");
    expect(dev.vars.ENVIRONMENT).toBe("dev");
  });

  it("every environment sets every var (wrangler does not inherit vars), REALTIME_MAX_CONNECTIONS included", () => {
    const names = (vars: Record<string, unknown>) => Object.keys(vars).sort();
    // Except the base URLs, which each deployment sets for itself (README, "Deploy").
    const committed = names(local.vars).filter((name) => !PER_DEPLOYMENT.includes(name));
    expect(names(dev.vars)).toEqual(committed);
    expect(names(production.vars)).toEqual(committed);
    for (const environment of [local, dev, production]) expect(environment.vars.REALTIME_MAX_CONNECTIONS).toBe("10");
  });

  it("every environment binds both request budgets (not inherited) at the period the 429's Retry-After states, budgets on", () => {
    const budgets = (environment: typeof local) =>
      Object.fromEntries(environment.ratelimits.map((binding) => [binding.name, binding]));
    const namespaces = new Set<string>();
    for (const environment of [local, dev, production]) {
      const byName = budgets(environment);
      expect(Object.keys(byName).sort(), environment.name).toEqual(["ADDRESS_BUDGET", "USER_BUDGET"]);
      for (const binding of environment.ratelimits) {
        expect(binding.simple.period, `${environment.name} ${binding.name}`).toBe(BUDGET_PERIOD_SECONDS);
        namespaces.add(binding.namespace_id);
      }
      expect(byName.USER_BUDGET?.simple.limit).toBe(600);
      expect(byName.ADDRESS_BUDGET?.simple.limit).toBe(3000);
      expect(environment.vars.RATE_LIMIT_BUDGETS, environment.name).toBe("on");
    }
    // One namespace per binding per environment: a shared namespace_id would share the counters.
    expect(namespaces.size).toBe(6);
  });

  it("only a command that names --env production reaches production: every deploy script names its environment", () => {
    const deploying = Object.entries(scripts).filter(([, command]) =>
      /wrangler (deploy|d1 migrations apply[^&]*--remote)/.test(command),
    );
    expect(deploying.length).toBeGreaterThan(0);
    for (const [name, command] of deploying) {
      for (const step of command.split("&&")) {
        if (/wrangler deploy/.test(step) && !/--dry-run/.test(step)) expect(step, name).toMatch(/--env (dev|production)\b/);
        if (/--remote/.test(step)) expect(step, name).toMatch(/--env (dev|production)\b/);
      }
    }
    expect(scripts["deploy:production"]).toMatch(/wrangler deploy --env production$/);
    expect(scripts["deploy:dev"]).toMatch(/wrangler deploy --env dev$/);
  });
});

/**
 * A first deploy from the README works (README, "Deploy"): no placeholder that a deploy would use,
 * a database it finds or creates by name before migrating it, and somewhere to be served.
 */
describe("a first deploy serves", () => {
  const PLACEHOLDER_ID = /^0{8}-0{4}-0{4}-0{4}-/;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  it.each(["dev", "production"] as const)("%s: every D1 binding is found by name, or pinned to a real id", (name) => {
    const { d1Databases } = env.TEST_WRANGLER_ENVIRONMENTS[name];
    expect(d1Databases.map((database) => database.binding)).toEqual(["DB"]);
    for (const database of d1Databases) {
      expect(database.database_name, database.binding).toMatch(/^credit-chat-/);
      if (database.database_id === undefined) continue;
      expect(database.database_id, `${name} ${database.binding}`).toMatch(UUID);
      expect(database.database_id, `${name} ${database.binding} is a placeholder`).not.toMatch(PLACEHOLDER_ID);
    }
    // Each deployed environment has its own database.
    expect(dev.d1Databases[0]?.database_name).not.toBe(production.d1Databases[0]?.database_name);
  });

  it.each(["dev", "production"] as const)(
    "%s: the deploy creates a missing database before migrating it, then deploys",
    (name) => {
      const steps = scripts[`deploy:${name}`]!.split("&&").map((step) => step.trim());
      expect(steps).toEqual([
        `node scripts/ensure-d1.ts --env ${name}`,
        `wrangler d1 migrations apply DB --remote --env ${name}`,
        `wrangler deploy --env ${name}`,
      ]);
    },
  );

  it.each(["dev", "production"] as const)("%s: is served somewhere (workers.dev or a real route)", (name) => {
    const { workersDev, routes, route } = env.TEST_WRANGLER_ENVIRONMENTS[name];
    const patterns = [...routes, ...(route ? [route] : [])].map((r) =>
      typeof r === "string" ? r : (r as { pattern: string }).pattern,
    );
    expect(workersDev === true || patterns.length > 0).toBe(true);
    for (const pattern of patterns) expect(pattern).not.toMatch(/example\.(com|org|net)|your-domain/);
  });
});

/** Issue 29, "Deploy and docs": what a deployed environment serves and calls itself. */
describe("deployed environments name only their own hosts", () => {
  const served = (vars: Partial<Record<keyof Env, string>>) => call("GET", "/health", { vars });
  const deployed = (environment: "dev" | "production") => ({
    ...DEPLOYED_URLS,
    ENVIRONMENT: environment,
    JWT_SECRET: STRONG_SECRET,
    ADMIN_EMAILS: "",
  });

  it("a production config with a placeholder URL refuses to serve (500 with a log line naming the var), like a weak secret", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      for (const environment of ["dev", "production"] as const) {
        expect((await served(deployed(environment))).status, environment).toBe(200);
        for (const [name, url] of [
          ["PRODUCTION_BASE_URL", "https://api.credit-chat.example.com"],
          ["DEV_BASE_URL", "https://credit-chat-dev.example.workers.dev"],
          ["DEV_BASE_URL", "https://credit-chat-dev.your-account.workers.dev"],
          ["PRODUCTION_BASE_URL", "https://example.org"],
          ["PRODUCTION_BASE_URL", "http://api.creditchat.app"],
          ["PRODUCTION_BASE_URL", "https://localhost:8787"],
          ["DEV_BASE_URL", "https://staging.creditchat.test"],
        ] as const) {
          logged.mockClear();
          const res = await served({ ...deployed(environment), [name]: url });
          expectError(res, 500, "internal_error");
          expect(res.text).not.toContain(url);
          expect(logged.mock.calls.flat().join("\n"), `${environment} ${url}`).toContain(name);
        }
        // Absent (not set for this deployment yet): refused too.
        expect(() => getConfig({ ...env, ...deployed(environment), PRODUCTION_BASE_URL: undefined } as unknown as Env)).toThrow(
          /PRODUCTION_BASE_URL/,
        );
      }
    } finally {
      logged.mockRestore();
    }
    // Local development keeps its example hosts.
    expect((await call("GET", "/health")).status).toBe(200);
    expect(placeholderUrlProblem(String(local.vars.DEV_BASE_URL))).not.toBeNull();
  });

  it("what is committed for dev and production names no base URL at all: each deployment sets its own", () => {
    for (const environment of [dev, production]) {
      for (const name of PER_DEPLOYMENT) expect(environment.vars[name], `${environment.name} ${name}`).toBeUndefined();
    }
  });

  it("production's /docs lists Production first; dev's lists Development first; local's the local server", async () => {
    const servers = async (vars: Partial<Record<keyof Env, string>>) =>
      (await call("GET", "/openapi.json", { vars })).json.servers.map((s: { description: string }) => s.description);
    expect(await servers(deployed("production"))).toEqual(["Production", "Development"]);
    expect(await servers(deployed("dev"))).toEqual(["Development", "Production"]);
    expect(await servers({})).toEqual(["Local", "Development", "Production"]);
    const productionDoc = (await call("GET", "/openapi.json", { vars: deployed("production") })).json;
    expect(productionDoc.servers[0].url).toBe(DEPLOYED_URLS.PRODUCTION_BASE_URL);
  });

  it("local Workflow names differ from every environment's (names are account-wide), and each environment's are its own", () => {
    const names = (environment: typeof local) => environment.workflows.map((workflow) => workflow.name);
    const [localNames, devNames, productionNames] = [names(local), names(dev), names(production)];
    expect(localNames.length).toBeGreaterThan(0);
    for (const name of localNames) {
      expect(devNames, name).not.toContain(name);
      expect(productionNames, name).not.toContain(name);
      expect(name).toMatch(/^credit-chat-local-/);
    }
    for (const name of devNames) expect(productionNames, name).not.toContain(name);
    // Every environment binds the same Workflows (bindings are not inherited).
    const bindings = (environment: typeof local) => environment.workflows.map((workflow) => workflow.binding).sort();
    expect(bindings(dev)).toEqual(bindings(local));
    expect(bindings(production)).toEqual(bindings(local));
    expect(bindings(local)).toEqual(["ADMIN_COMMAND", "RECONCILIATION"]);
  });

  it("the operator command's Workflow (`npm run admin` triggers it by name) follows the names of each environment", () => {
    const named = (environment: typeof local) => environment.workflows.find((w) => w.binding === "ADMIN_COMMAND")?.name;
    expect(named(local)).toBe("credit-chat-local-admin-command");
    expect(named(dev)).toBe("credit-chat-dev-admin-command");
    expect(named(production)).toBe("credit-chat-admin-command");
  });
});
