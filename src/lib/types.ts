import type { Config } from "./config";

/**
 * The signed-in caller, as the access token states it; `sessionId` is the refresh-token family
 * the token was issued for (what a realtime socket belongs to).
 */
export type AuthUser = { id: string; role: "user" | "admin"; sessionId: string };

/** Hono's environment for every router of this app. */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    config: Config;
    /** Set by the auth middleware on routes declared with `auth: true`; read it with `currentUser(c)`. */
    user: AuthUser | undefined;
  };
};
