import { DurableObject } from "cloudflare:workers";

/** The exact client ping text the runtime answers itself, without waking a hibernated object. */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/** Header on the Worker → object upgrade request carrying the SHA-256 (hex) of the ticket secret. */
export const TICKET_HASH_HEADER = "X-Realtime-Ticket-Hash";

/** Unexpired tickets a user may hold at once; issuing more drops the oldest, so storage stays bounded. */
export const MAX_PENDING_TICKETS = 50;

/** Why the object refused an upgrade: the Worker turns it into the 401 envelope. */
export type TicketRefusal = { reason: string };

type ClientFrame = { type?: unknown };

/**
 * One per user (`idFromName(userId)`): that user's WebSocket connections, one per device, held
 * with the hibernation API, so an idle connection costs no running object; and the user's
 * pending connection tickets (hashed, single-use). Everything here is synchronous SQL on the
 * object's own storage, so consuming a ticket is atomic even when two upgrades race.
 */
export class RealtimeDO extends DurableObject<Env> {
  /**
   * `deliver` calls since this instance started (memory only, reset on eviction; a field, so not
   * callable over RPC): tests read it with runInDurableObject to count the object calls a change
   * costs, which the frames on a socket cannot show.
   */
  deliverCalls = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  /**
   * Created on first ticket, not in the constructor: most objects only ever get `deliver` calls
   * (every member of every chat is published to, connected or not) and should write nothing.
   */
  private tickets(): SqlStorage {
    const sql = this.ctx.storage.sql;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS tickets (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL)",
    );
    return sql;
  }

  /** Stores a ticket's hash until `expiresAt` (epoch ms); expired ones are swept on the way. */
  issueTicket(hash: string, expiresAt: number, now: number): void {
    const sql = this.tickets();
    sql.exec("DELETE FROM tickets WHERE expires_at <= ?", now);
    sql.exec("INSERT INTO tickets (hash, expires_at, created_at) VALUES (?, ?, ?)", hash, expiresAt, now);
    sql.exec(
      "DELETE FROM tickets WHERE hash NOT IN (SELECT hash FROM tickets ORDER BY created_at DESC, rowid DESC LIMIT ?)",
      MAX_PENDING_TICKETS,
    );
  }

  /**
   * The upgrade, forwarded by the Worker after it checked the `Upgrade` header. The ticket is
   * deleted by the same statement that reads it, so a second use finds nothing whatever the
   * timing; an expired one is consumed too (it could never become valid again).
   */
  override async fetch(request: Request): Promise<Response> {
    const hash = request.headers.get(TICKET_HASH_HEADER) ?? "";
    const row = this.tickets()
      .exec<{ expires_at: number }>("DELETE FROM tickets WHERE hash = ? RETURNING expires_at", hash)
      .toArray()[0];
    if (!row) return refusal("The ticket is unknown or was already used; request a new one");
    if (row.expires_at <= Date.now()) return refusal("The ticket has expired; request a new one");

    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ connectedAt: Date.now() });
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Sends serialized frames, in order, to every open connection of this user: several events for
   * one user cost one call (a transfer's wallet.updated, message.created, transfer.received). A
   * socket that fails (closing, gone) is skipped so the others still get them; returns how many
   * sockets received every frame.
   */
  deliver(frames: readonly string[]): number {
    this.deliverCalls += 1;
    let delivered = 0;
    for (const socket of this.ctx.getWebSockets()) {
      try {
        for (const frame of frames) socket.send(frame);
        delivered += 1;
      } catch {
        // A socket closing under us: the client reconnects and catches up (docs/realtime.md).
      }
    }
    return delivered;
  }

  /** Open connections of this user (all devices). */
  connections(): number {
    return this.ctx.getWebSockets().length;
  }

  /**
   * Only pings are accepted from clients. The exact ping text is answered by the runtime (auto
   * response); a ping spelled differently (spaces, extra fields) lands here and is answered too.
   */
  override webSocketMessage(socket: WebSocket, message: string | ArrayBuffer): void {
    if (typeof message === "string" && parseClientFrame(message)?.type === "ping") {
      socket.send(PONG_FRAME);
      return;
    }
    socket.send(
      JSON.stringify({
        type: "error",
        data: { code: "validation_failed", message: 'Clients may only send {"type":"ping"}' },
        at: new Date().toISOString(),
      }),
    );
  }

  override webSocketClose(socket: WebSocket, code: number, reason: string): void {
    try {
      // 1005/1006 are reserved: they describe an absent status and cannot be sent back.
      socket.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed (the runtime may have answered the close itself).
    }
  }

  override webSocketError(socket: WebSocket): void {
    try {
      socket.close(1011, "error");
    } catch {
      // Already gone.
    }
  }
}

function parseClientFrame(text: string): ClientFrame | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as ClientFrame) : null;
  } catch {
    return null;
  }
}

function refusal(reason: string): Response {
  return Response.json({ reason } satisfies TicketRefusal, { status: 401 });
}
