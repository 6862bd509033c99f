import { describe, expect, it } from "vitest";
import { CreditChatClient } from "../src/client.js";
import { SignedOutError } from "../src/errors.js";
import { memoryTokenStore } from "../src/tokens.js";
import { envelope, fakeFetch, refusal } from "./fakes.js";

const user = { id: "a".repeat(24), displayName: "A", role: "user", status: "active", createdAt: "2026-01-01T00:00:00.000Z" };

describe("single-flight refresh", () => {
  it("ten calls that meet token_expired trigger one refresh, then all repeat with the new token", async () => {
    let refreshes = 0;
    const { fetch, requests } = fakeFetch(async (request) => {
      if (request.url.endsWith("/api/v1/auth/refresh")) {
        refreshes++;
        await new Promise((resolve) => setTimeout(resolve, 20));
        return envelope(200, { accessToken: "new", refreshToken: "refresh-2", expiresIn: 900, user });
      }
      return request.headers.get("Authorization") === "Bearer new" ? envelope(200, user) : refusal(401, "token_expired");
    });
    const tokens = memoryTokenStore({ accessToken: "old", refreshToken: "refresh-1" });
    const client = new CreditChatClient({ baseUrl: "http://api.test", fetch, tokens });
    const answers = await Promise.all(Array.from({ length: 10 }, () => client.me()));
    expect(answers.every((answer) => answer.id === user.id)).toBe(true);
    expect(refreshes).toBe(1);
    expect(tokens.get()).toEqual({ accessToken: "new", refreshToken: "refresh-2" });
    const refreshBody = await requests.find((r) => r.url.endsWith("/auth/refresh"))?.json();
    expect(refreshBody).toEqual({ refreshToken: "refresh-1" });
  });

  it("a refused refresh signs out once and the calls fail without looping", async () => {
    let refreshes = 0;
    const { fetch, requests } = fakeFetch((request) => {
      if (request.url.endsWith("/api/v1/auth/refresh")) {
        refreshes++;
        return refusal(401, "invalid_token");
      }
      return refusal(401, "token_expired");
    });
    const tokens = memoryTokenStore({ accessToken: "old", refreshToken: "used" });
    const client = new CreditChatClient({ baseUrl: "http://api.test", fetch, tokens });
    const signedOut: string[] = [];
    client.on("signedOut", ({ reason }) => signedOut.push(reason));
    const results = await Promise.allSettled([client.me(), client.me(), client.wallet()]);
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(refreshes).toBe(1);
    expect(signedOut).toHaveLength(1);
    expect(tokens.get()).toBeNull();
    expect(requests.length).toBe(4);
  });
});

describe("session_ended", () => {
  it("becomes a signedOut event and an error, never a retry", async () => {
    const { fetch, requests } = fakeFetch(() => refusal(401, "session_ended"));
    const tokens = memoryTokenStore({ accessToken: "old", refreshToken: "r" });
    const client = new CreditChatClient({ baseUrl: "http://api.test", fetch, tokens });
    const events: string[] = [];
    client.on("signedOut", ({ reason }) => events.push(reason));
    await expect(client.sendCredits("b".repeat(24), 5)).rejects.toBeInstanceOf(SignedOutError);
    expect(requests).toHaveLength(1);
    expect(events).toEqual(["session_ended"]);
    expect(tokens.get()).toBeNull();
  });
});
