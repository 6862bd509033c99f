import { call } from "./http";

/** Sessions through the real auth endpoints (refresh tokens included), for suites about their ends. */
export const PASSWORD = "correct horse battery";

export const uniqueEmail = (tag = "user") => `${tag}-${crypto.randomUUID()}@example.com`;

/** Each request its own client address, so the per-IP auth limit never spills between tests. */
export const ip = () => ({
  "CF-Connecting-IP": `10.${Math.floor(Math.random() * 255)}.${Math.floor(Math.random() * 255)}.${Math.floor(Math.random() * 255)}`,
});

export type SessionPair = { user: { id: string; email: string }; accessToken: string; refreshToken: string; expiresIn: number };

function expectSession(res: Awaited<ReturnType<typeof call>>, status: number): SessionPair {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status} ${res.text}`);
  return res.json.data;
}

/** A new account and its first session. */
export async function registerSession(email = uniqueEmail(), password = PASSWORD): Promise<SessionPair> {
  return expectSession(
    await call("POST", "/api/v1/auth/register", { body: { email, password, displayName: "Session" }, headers: ip() }),
    201,
  );
}

/** Another session (a new refresh-token family) of an existing account. */
export async function loginSession(email: string, password = PASSWORD): Promise<SessionPair> {
  return expectSession(await call("POST", "/api/v1/auth/login", { body: { email, password }, headers: ip() }), 200);
}

export const refresh = (refreshToken: string) => call("POST", "/api/v1/auth/refresh", { body: { refreshToken }, headers: ip() });

export const logout = (session: Pick<SessionPair, "accessToken" | "refreshToken">) =>
  call("POST", "/api/v1/auth/logout", { token: session.accessToken, body: { refreshToken: session.refreshToken } });

export const logoutAll = (accessToken: string) => call("POST", "/api/v1/auth/logout-all", { token: accessToken });

export const changePassword = (accessToken: string, currentPassword: string, newPassword: string) =>
  call("POST", "/api/v1/auth/password", { token: accessToken, body: { currentPassword, newPassword }, headers: ip() });
