/** The pair a session is made of. The access token is short-lived; the refresh token is single-use. */
export type Tokens = { accessToken: string; refreshToken: string };

/** Where the client keeps its session. Replace it to keep tokens wherever the app must (a keychain, a cookie jar). */
export interface TokenStore {
  get(): Tokens | null;
  /** null clears the session. */
  set(tokens: Tokens | null): void;
}

export function memoryTokenStore(initial: Tokens | null = null): TokenStore {
  let tokens = initial;
  return {
    get: () => tokens,
    set: (next) => {
      tokens = next;
    },
  };
}

type KeyValueStorage = Pick<Storage, "getItem" | "setItem" | "removeItem">;

/** Survives reloads in a browser; `storage` defaults to `localStorage` (pass `sessionStorage` for one tab's life). */
export function localStorageTokenStore(
  key = "credit-chat.tokens",
  storage: KeyValueStorage = globalThis.localStorage,
): TokenStore {
  return {
    get: () => {
      const raw = storage.getItem(key);
      if (!raw) return null;
      try {
        const parsed = JSON.parse(raw) as Partial<Tokens>;
        return typeof parsed.accessToken === "string" && typeof parsed.refreshToken === "string"
          ? { accessToken: parsed.accessToken, refreshToken: parsed.refreshToken }
          : null;
      } catch {
        // A corrupted entry is no session, not a crash at start-up.
        return null;
      }
    },
    set: (tokens) => (tokens ? storage.setItem(key, JSON.stringify(tokens)) : storage.removeItem(key)),
  };
}
