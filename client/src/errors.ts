/** What the API refused, from its envelope: `status`, the stable `code`, and the `errors` sentences. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: string[];
  readonly response: Response;

  constructor(response: Response, body: unknown) {
    const envelope = (typeof body === "object" && body !== null ? body : {}) as { code?: unknown; errors?: unknown };
    const errors = Array.isArray(envelope.errors) ? envelope.errors.map(String) : [];
    const code = typeof envelope.code === "string" ? envelope.code : `http_${response.status}`;
    super(`${response.status} ${code}${errors.length ? `: ${errors.join("; ")}` : ""}`);
    this.name = "ApiError";
    this.status = response.status;
    this.code = code;
    this.errors = errors;
    this.response = response;
  }
}

/** The session is over (logged out, revoked, refresh refused): sign in again; retrying cannot help. */
export class SignedOutError extends Error {
  constructor(readonly reason: string) {
    super(`signed out: ${reason}`);
    this.name = "SignedOutError";
  }
}
