import { z } from "@hono/zod-openapi";
import { defineRoute, jsonSuccess, SESSION_ENDED_NOTE } from "../../lib/openapi";
import { REALTIME_CLOSE_CODES, ticketSchema } from "../../schemas/realtime";

const TAGS = ["Realtime"];

/** The frames the server sends on the socket, registered as components by the realtime router. */
export const SERVER_FRAMES = ["RealtimeFrame", "RealtimePongFrame", "RealtimeErrorFrame"] as const;

export const createTicket = defineRoute(
  {
    method: "post",
    path: "/api/v1/realtime/tickets",
    operationId: "createRealtimeTicket",
    tags: TAGS,
    summary: "Create a realtime connection ticket",
    description: [
      "Browsers cannot send an `Authorization` header when opening a WebSocket, so the client first trades its access token for a ticket here, then opens `GET /api/v1/realtime?ticket=<ticket>` within 60 seconds.",
      "A ticket is signed by the server (an HMAC the Worker checks before anything else, so a forged one costs nothing) and works once: it is consumed by the first upgrade that presents it, even when several race. Only its SHA-256 is stored. No request body.",
      "The socket it opens belongs to the session (refresh-token family) of this access token and is closed when that session ends.",
      SESSION_ENDED_NOTE,
    ].join("\n\n"),
    responses: { 201: jsonSuccess(ticketSchema, 201, "A single-use ticket, valid for `expiresIn` seconds") },
  },
  { auth: "user" },
);

export const connect = defineRoute(
  {
    method: "get",
    path: "/api/v1/realtime",
    operationId: "connectRealtime",
    tags: TAGS,
    summary: "Open the realtime WebSocket",
    description: [
      "Upgrades to a WebSocket (send `Upgrade: websocket`) that pushes the caller's events as they commit. Open one per device; every connection of a user receives every event of that user.",
      "**Refusals** (JSON envelope, no upgrade): no `Upgrade: websocket` header → 426 `upgrade_required` (the ticket is not consumed); no `ticket` → 401 `authentication_required`; a malformed, forged, unknown, already used or expired ticket → 401 `invalid_token` (a malformed, forged or expired one is refused before any server-side state is touched).",
      "**Server → client** frames are JSON text `{type, data, at}` (`at`: ISO-8601 send time), schema `RealtimeFrame`:",
      "- `message.created`, `message.updated`, `message.deleted` — `data`: `Message`; to every member of the chat (sender's other devices included).",
      "- `chat.read` — `data`: `{chatId, userId, lastReadSeq}`; to every member of the chat when one moves their read marker.",
      "- `wallet.updated` — `data`: `Wallet`; to the wallet's owner after each balance change (transfer sent or received, grant).",
      "- `transfer.received` — `data`: `Transfer`; to the recipient of a credit transfer.",
      '**Client → server**: only `{"type":"ping"}`, answered `{"type":"pong"}` (even while the server-side object hibernates). Anything else is answered `{"type":"error","data":{"code":"validation_failed","message":"…"},"at":"…"}` and the connection stays open.',
      `**Close codes** (the server ends a socket with these; 4000–4999 are the application's): \`${REALTIME_CLOSE_CODES.sessionEnded.code}\` \`${REALTIME_CLOSE_CODES.sessionEnded.reason}\` — the session whose access token asked for the ticket ended (logout, logout-all, password change, or reuse of a used refresh token), within 2 s of it: sign in or refresh before reconnecting; \`${REALTIME_CLOSE_CODES.accountSuspended.code}\` \`${REALTIME_CLOSE_CODES.accountSuspended.reason}\` — an admin suspended the account (all of its sockets; a suspended user may reconnect to read); \`${REALTIME_CLOSE_CODES.tooManyConnections.code}\` \`${REALTIME_CLOSE_CODES.tooManyConnections.reason}\` — the user opened more than \`REALTIME_MAX_CONNECTIONS\` (default 10) sockets and this was the oldest. A socket outlives its access token: it ends with its session, not at the token's expiry.`,
      "**Delivery** is at most once per connection, only after the change has committed. After a reconnect a client catches up with `GET /api/v1/messages/chat/{chatId}?afterSeq=<last seq seen>` (and `GET /api/v1/wallets/me` for the balance), so nothing is lost. See docs/realtime.md.",
    ].join("\n\n"),
    request: {
      query: z.object({
        ticket: z.string().max(256, { message: "must be at most 256 characters" }).optional().openapi({
          description: "The ticket from `POST /api/v1/realtime/tickets`.",
          example: "64d15f9e2e6c8f4d5a123456.q2V8oJ6cD3mW1xYzR0b9kXl4sPaT7uEe-HfGi5jKn_M",
        }),
      }),
    },
    responses: {
      101: {
        description:
          'Switching Protocols: the WebSocket is open. Its text frames (server → client) are one of these JSON objects; the client sends only `{"type":"ping"}` (`x-client-frames`).',
        content: {
          "application/json": {
            schema: { oneOf: SERVER_FRAMES.map((name) => ({ $ref: `#/components/schemas/${name}` })) },
          },
        },
        // What the client may send; inline because no operation carries it as a body (a component would be unused).
        "x-client-frames": [{ type: "object", required: ["type"], properties: { type: { const: "ping" } } }],
      },
      401: { $ref: "#/components/responses/Unauthorized" },
    },
  },
  { auth: "none", errors: [426] },
);
