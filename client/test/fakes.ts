import type { Message } from "../src/types.js";

/** A message as the server would send it, for seq `seq` of chat `chatId`. */
export function message(chatId: string, seq: number): Message {
  return {
    id: seq.toString(16).padStart(24, "0"),
    chatId,
    seq,
    senderId: "a".repeat(24),
    type: "text",
    content: `m${seq}`,
    replyToMessageId: null,
    clientMessageId: null,
    creditTransfer: null,
    createdAt: new Date(0).toISOString(),
    editedAt: null,
    deletedAt: null,
  };
}

/** The API's envelope around `data`. */
export function envelope(status: number, data: unknown, headers: Record<string, string> = {}): Response {
  return new Response(
    JSON.stringify({ isSuccess: status < 400, statusCode: status, data, errors: null, timestamp: new Date().toISOString() }),
    {
      status,
      headers: { "Content-Type": "application/json", ...headers },
    },
  );
}

export function refusal(status: number, code: string, headers: Record<string, string> = {}): Response {
  return new Response(
    JSON.stringify({
      isSuccess: false,
      statusCode: status,
      data: null,
      errors: ["x"],
      code,
      timestamp: new Date().toISOString(),
    }),
    {
      status,
      headers: { "Content-Type": "application/json", ...headers },
    },
  );
}

export type Handler = (request: Request) => Response | Promise<Response>;

/** A fetch that records every request and answers with `handler`. */
export function fakeFetch(handler: Handler) {
  const requests: Request[] = [];
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    requests.push(request.clone());
    return handler(request);
  }) as typeof globalThis.fetch;
  return { fetch, requests };
}

/** A fast policy for tests: the default's decisions, with 1 ms delays. */
export const FAST = { baseMs: 1, maxMs: 2 };
