import { ApiError, SignedOutError } from "./errors.js";
import { type RetryPolicy, sleep } from "./retry.js";
import type { TokenStore } from "./tokens.js";
import type { Session } from "./types.js";

export type AuthFetchOptions = {
  baseUrl: string;
  tokens: TokenStore;
  fetch: typeof fetch;
  /** One attempt's limit: a proxy or network that swallows a request must not hang the operation. */
  timeoutMs: number;
  /** The session is over (`session_ended`, a refused refresh): the app should sign in again. */
  onSignedOut: (reason: string) => void;
  onRefreshed: (session: Session) => void;
};

/** The envelope's `code` of an error response, read from a copy so the caller can still read the body. */
async function errorCode(response: Response): Promise<string | undefined> {
  try {
    const body = (await response.clone().json()) as { code?: unknown };
    return typeof body.code === "string" ? body.code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The fetch the typed client sends through: it adds the bearer token, bounds each attempt, and
 * when an access token has expired it refreshes once, however many requests found out at the same
 * moment, then repeats the request with the new token. A refresh token is single-use and reusing
 * one revokes the whole session, so ten parallel refreshes would sign the user out: hence the
 * single flight.
 */
export class AuthFetch {
  private refreshing: Promise<string | null> | null = null;

  constructor(private readonly options: AuthFetchOptions) {}

  readonly fetch = async (input: Request): Promise<Response> => {
    const used = this.options.tokens.get()?.accessToken;
    // Keep `input` unread: it is what a repeat after a refresh sends.
    const response = await this.send(input.clone(), used);
    if (response.status !== 401 || !used) return response;
    const code = await errorCode(response);
    if (code === "session_ended") {
      this.options.tokens.set(null);
      this.options.onSignedOut("session_ended");
      return response;
    }
    if (code !== "token_expired") return response;
    const fresh = await this.refreshOnce(used);
    return fresh ? this.send(input, fresh) : response;
  };

  private send(request: Request, accessToken: string | undefined): Promise<Response> {
    const headers = new Headers(request.headers);
    if (accessToken && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${accessToken}`);
    const signal = AbortSignal.any([request.signal, AbortSignal.timeout(this.options.timeoutMs)]);
    return this.options.fetch(new Request(request, { headers, signal }));
  }

  /** The access token to repeat with: a newer one already stored, or the result of the one refresh in flight. */
  refreshOnce(expired: string): Promise<string | null> {
    const current = this.options.tokens.get();
    if (current && current.accessToken !== expired) return Promise.resolve(current.accessToken);
    if (!current) return Promise.resolve(null);
    this.refreshing ??= this.refresh(current.refreshToken).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async refresh(refreshToken: string): Promise<string | null> {
    const response = await this.options.fetch(
      new Request(`${this.options.baseUrl}/api/v1/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refreshToken }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      }),
    );
    if (response.status === 200) {
      const session = ((await response.json()) as { data: Session }).data;
      this.options.tokens.set({ accessToken: session.accessToken, refreshToken: session.refreshToken });
      this.options.onRefreshed(session);
      return session.accessToken;
    }
    if (response.status === 401) {
      // The refresh token was used, revoked or expired: no retry can bring this session back.
      this.options.tokens.set(null);
      this.options.onSignedOut(`refresh_refused:${(await errorCode(response)) ?? "401"}`);
      return null;
    }
    throw new ApiError(response, await response.json().catch(() => null));
  }
}

/** What every openapi-fetch call answers. */
type Outcome = { data?: { data: unknown }; error?: unknown; response: Response };
/** The envelope's `data` of any success the operation documents (201 and 202 alike). */
type Payload<O extends Outcome> = NonNullable<O["data"]>["data"];

/**
 * Runs one API operation to its answer: repeats `attempt` while the policy says so (the caller
 * puts the same Idempotency-Key in every attempt), then unwraps the envelope's `data`, or throws
 * ApiError with the envelope's code. `retry: false` for operations that are not safe to repeat.
 */
export async function call<O extends Outcome>(attempt: () => Promise<O>, policy: RetryPolicy | null): Promise<Payload<O>> {
  for (let n = 1; ; n++) {
    let outcome: O | undefined;
    let thrown: unknown;
    try {
      outcome = await attempt();
    } catch (error) {
      thrown = error;
    }
    if (outcome?.data !== undefined && outcome.response.ok) return outcome.data.data as Payload<O>;
    // openapi-fetch has read the body already: its parsed envelope is `error`.
    if (outcome?.response.status === 401 && (outcome.error as { code?: unknown } | undefined)?.code === "session_ended") {
      throw new SignedOutError("session_ended");
    }
    const delay = policy ? policy({ attempt: n, error: thrown, response: outcome?.response }) : null;
    if (delay === null) {
      if (outcome) throw new ApiError(outcome.response, outcome.error);
      throw thrown;
    }
    await sleep(delay);
  }
}

/** A fresh Idempotency-Key: one per operation, reused by every retry of it. */
export function newKey(): string {
  return globalThis.crypto.randomUUID();
}
