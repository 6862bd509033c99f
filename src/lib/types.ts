import type { Context } from "hono";
import type { Database } from "../db/client";
import type { Config } from "./config";
import type { ErrorCode } from "./errors";

/**
 * The signed-in caller, as the access token states it; `sessionId` is the refresh-token family
 * the token was issued for (what a realtime socket belongs to).
 */
export type AuthUser = { id: string; role: "user" | "admin"; sessionId: string };

/**
 * Hono's environment for every router of this app. The request context is `c.var`, built once
 * per request by the app's context middleware and by the middlewares a route's options install
 * (lib/openapi.ts `defineRoute`); handlers read their dependencies from it and hand services
 * plain values (db, env, config, ids), never the Hono context.
 */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    /** The server's own id of this request (X-Request-Id on the response, log lines, the audit log). */
    requestId: string;
    /** The X-Request-Id the client sent, when sane: logged beside `requestId`, never used as it. */
    clientRequestId: string | undefined;
    config: Config;
    /** Drizzle on this request's D1 binding. */
    db: Database;
    /** Set on routes declared with `auth: "user"` or `"admin"`; read it with `currentUser(c)`. */
    user: AuthUser | undefined;
    /** Routes declared `idempotent`: the caller's `Idempotency-Key`, null when none was sent. */
    idempotencyKey: string | null;
    /** Admin routes whose outcome the wallet keeps: the admin check's refusal, answered after a stored outcome. */
    adminRefusal: { code: ErrorCode; details: string[] } | null;
    /**
     * Routes whose outcome a chat keeps (message sends): a budget's 429 for a keyed request,
     * handed to the chat, which answers it only when the key has no stored outcome (API.md §1).
     */
  };
};

/**
 * A step a route option installs after request validation (idempotency, rate limits), in
 * declaration order before the handler: it answers by calling `next` or by returning its own
 * response (a replay).
 */
export type RouteStep = (c: Context<AppEnv>, next: () => Promise<Response>) => Promise<Response>;
