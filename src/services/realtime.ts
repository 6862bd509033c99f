import {
  MAX_CONNECTIONS_HEADER,
  TICKET_HASH_HEADER,
  type TicketRefusal,
  USER_ID_HEADER,
} from "../durable-objects/realtime/realtime-do";
import type { Config } from "../lib/config";
import { fromBase64Url, toBase64Url } from "../lib/encoding";
import { ApiError } from "../lib/errors";
import { ID_PATTERN } from "../lib/ids";
import { log } from "../lib/log";
import type { AuthUser } from "../lib/types";
import type { RealtimeEvent, RealtimeFrame } from "../schemas/realtime";
import { sessionEnded } from "./session-check";

/**
 * Realtime push: connection tickets, the WebSocket upgrade, `publish`, which fans an event out
 * to every connection of the given users through their RealtimeDO (one per user), and the ends
 * of connections: a session's end (4001), a suspension (4003).
 */

export const TICKET_TTL_SECONDS = 60;

/** Concurrent RealtimeDO calls per published event (a 100-member group goes out 16 at a time). */
export const PUBLISH_CONCURRENCY = 16;

/** `waitUntil` of the request or object that committed the change (ExecutionContext / DurableObjectState). */
export type WaitUntil = (promise: Promise<unknown>) => void;

/** A request's `waitUntil` (Hono's `c.executionCtx`), read only when publishing, so a context without one loses only the push. */
export const requestWaitUntil =
  (c: { executionCtx: { waitUntil(promise: Promise<unknown>): void } }): WaitUntil =>
  (promise) =>
    c.executionCtx.waitUntil(promise);

const realtimeStub = (env: Env, userId: string) => env.REALTIME.get(env.REALTIME.idFromName(userId));

/**
 * A ticket is `<userId>.<expiresAt ms>.<nonce>.<mac>`, the mac an HMAC-SHA256 of the rest under a
 * key derived from JWT_SECRET for tickets only (`ticketKey`). The Worker verifies it before any
 * object is touched, so a forged or expired ticket costs no Durable Object call and creates no
 * storage; the user id routes a genuine one to that user's object, which keeps its SHA-256 with
 * the session of the access token that asked (its socket ends with that session) and deletes it on
 * use: single use is the object's, which no self-contained token could give.
 * 401 `session_ended` when that session has already ended.
 */
export async function issueTicket(
  env: Env,
  config: Config,
  caller: Pick<AuthUser, "id" | "sessionId">,
  now = Date.now(),
): Promise<{ ticket: string; expiresIn: number }> {
  const expiresAt = now + TICKET_TTL_SECONDS * 1000;
  const payload = `${caller.id}.${expiresAt}.${toBase64Url(crypto.getRandomValues(new Uint8Array(16)))}`;
  const mac = await crypto.subtle.sign("HMAC", await ticketKey(config.jwtSecret), utf8.encode(payload));
  const ticket = `${payload}.${toBase64Url(new Uint8Array(mac))}`;
  const stored = await realtimeStub(env, caller.id).issueTicket(await sha256Hex(ticket), caller.sessionId, expiresAt, now);
  if (!stored) throw sessionEnded();
  return { ticket, expiresIn: TICKET_TTL_SECONDS };
}

const utf8 = new TextEncoder();
const TICKET_SHAPE = /^([0-9a-f]{24})\.(\d{13,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const ticketKeys = new Map<string, Promise<CryptoKey>>();

/**
 * The ticket key of a secret: HMAC-SHA256(secret, a label naming tickets), so a ticket mac is never
 * a valid signature of anything else made with JWT_SECRET (an access token) and the other way round.
 */
function ticketKey(secret: string): Promise<CryptoKey> {
  let key = ticketKeys.get(secret);
  if (!key) {
    key = crypto.subtle
      .importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
      .then((master) => crypto.subtle.sign("HMAC", master, utf8.encode("credit-chat realtime ticket key v1")))
      .then((derived) => crypto.subtle.importKey("raw", derived, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]));
    key.catch(() => ticketKeys.delete(secret));
    ticketKeys.set(secret, key);
  }
  return key;
}

/**
 * The user a ticket was issued to, once its mac holds under JWT_SECRET (or JWT_SECRET_PREVIOUS
 * during a rotation) and it has not expired; 401 `invalid_token` otherwise. Touches no object.
 */
async function verifyTicket(config: Config, ticket: string, now: number): Promise<string> {
  const match = TICKET_SHAPE.exec(ticket);
  const mac = match && fromBase64Url(match[4]!);
  if (!match || !mac) throw new ApiError("invalid_token", ["The ticket is malformed"]);
  const payload = utf8.encode(ticket.slice(0, ticket.lastIndexOf(".")));
  let genuine = false;
  for (const secret of [config.jwtSecret, config.jwtPreviousSecret]) {
    if (secret !== null && !genuine) genuine = await crypto.subtle.verify("HMAC", await ticketKey(secret), mac, payload);
  }
  if (!genuine) throw new ApiError("invalid_token", ["The ticket is not one this server issued"]);
  if (Number(match[2]) <= now) throw new ApiError("invalid_token", ["The ticket has expired; request a new one"]);
  return match[1]!;
}

/**
 * Opens the WebSocket for a ticket: the 101 response of the user's object, which closes the
 * user's oldest connections past `maxConnections` and has marked the user connected (presence,
 * src/db/presence.ts) before answering. A missing ticket is 401 `authentication_required`;
 * a malformed, forged or expired one is 401 `invalid_token` from the Worker alone; an unknown or
 * used one is 401 `invalid_token` from the object; presence that could not be recorded is 500
 * with the ticket still usable.
 */
export async function connect(env: Env, config: Config, ticket: string | undefined, now = Date.now()): Promise<Response> {
  if (!ticket)
    throw new ApiError("authentication_required", ["Request a ticket with POST /api/v1/realtime/tickets, then pass ?ticket="]);
  const userId = await verifyTicket(config, ticket, now);
  const response = await realtimeStub(env, userId).fetch("https://realtime.internal/connect", {
    headers: {
      Upgrade: "websocket",
      [TICKET_HASH_HEADER]: await sha256Hex(ticket),
      [MAX_CONNECTIONS_HEADER]: String(config.realtimeMaxConnections),
      [USER_ID_HEADER]: userId,
    },
  });
  // Nothing to tell the user's chats: they push every frame to each member's realtime object,
  // which knows its own sockets, so a connect costs the same in 1 chat or 1,000.
  if (response.status === 101 && response.webSocket) return response;
  const refusal = await response.json<TicketRefusal>().catch(() => ({ reason: "The ticket was refused" }));
  // Anything but a ticket refusal is the object failing to record presence: 500, ticket kept.
  if (response.status !== 401) throw new Error(`realtime upgrade failed (${response.status}): ${refusal.reason}`);
  throw new ApiError("invalid_token", [refusal.reason]);
}

/**
 * Closes, with 4001 `session_ended`, the sockets of `sessionIds` (or, with `everySocket`, all of
 * the user's), and makes sure none of those sessions gets a ticket again. Awaited by whoever
 * revoked the sessions, right after the revocation committed, so the sockets close within the
 * revoking request; a failure throws (the revocation stands, and repeating it closes them).
 */
export async function endSessions(
  env: Env,
  userId: string,
  sessionIds: readonly string[],
  options: { everySocket: boolean },
): Promise<number> {
  return realtimeStub(env, userId).endSessions([...new Set(sessionIds)], options.everySocket, Date.now());
}

/** Closes every socket of a user who was just suspended with 4003 `account_suspended`. */
export async function closeForSuspension(env: Env, userId: string): Promise<number> {
  return realtimeStub(env, userId).suspend();
}

/**
 * Sends `events` (one, or several in order) to every connection of `userIds`, in the background of
 * the caller (`waitUntil`), after the change they describe has committed. Several events for the
 * same users go in one call per user, not one per event (a transfer: docs/realtime.md). Never
 * throws and never delays the caller: a user who misses a frame catches up over HTTP.
 *
 * Each listed user costs one RealtimeDO call, socket or not; every caller lists everybody
 * concerned (a transfer's two parties, a chat's members), with no presence read first, so a
 * socket opened before the request began always gets its frames.
 */
export function publish(
  env: Env,
  waitUntil: WaitUntil,
  userIds: Iterable<string>,
  events: RealtimeEvent | readonly RealtimeEvent[],
): void {
  const targets = [...new Set(userIds)];
  if (targets.length === 0) return;
  try {
    waitUntil(fanOut(env, targets, events));
  } catch (error) {
    logFailure(events, "scheduling", error);
  }
}

/** The fan-out itself, awaited: how many connections received the frames, how many users failed, who had no socket. */
export async function fanOut(env: Env, userIds: Iterable<string>, events: RealtimeEvent | readonly RealtimeEvent[]) {
  const at = new Date().toISOString();
  const frames = eventList(events).map((event) => JSON.stringify({ ...event, at } as RealtimeFrame));
  const queue = [...new Set(userIds)];
  let connections = 0;
  let failedUsers = 0;
  const unreached: string[] = [];
  const worker = async () => {
    for (let userId = queue.pop(); userId !== undefined; userId = queue.pop()) {
      try {
        const delivered = await realtimeStub(env, userId).deliver(frames);
        connections += delivered;
        if (delivered === 0) unreached.push(userId);
      } catch (error) {
        failedUsers += 1;
        logFailure(events, userId, error);
      }
    }
  };
  if (frames.length > 0) await Promise.all(Array.from({ length: Math.min(PUBLISH_CONCURRENCY, queue.length) }, worker));
  return { connections, failedUsers, unreached };
}

function eventList(events: RealtimeEvent | readonly RealtimeEvent[]): readonly RealtimeEvent[] {
  return Array.isArray(events) ? events : [events as RealtimeEvent];
}

function logFailure(events: RealtimeEvent | readonly RealtimeEvent[], target: string, error: unknown) {
  const types = eventList(events).map((event) => event.type);
  log.error("realtime.publish_failed", { type: types.join(","), target, error });
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
