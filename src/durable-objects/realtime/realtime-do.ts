import { DurableObject } from "cloudflare:workers";
import { ACCESS_TOKEN_TTL_SECONDS } from "../../lib/jwt";
import { REALTIME_CLOSE_CODES } from "../../schemas/realtime";

/** The exact client ping text the runtime answers itself, without waking a hibernated object. */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/** Headers on the Worker → object upgrade request: the SHA-256 (hex) of the ticket secret, and the connection cap. */
export const TICKET_HASH_HEADER = "X-Realtime-Ticket-Hash";
export const MAX_CONNECTIONS_HEADER = "X-Realtime-Max-Connections";

/** Unexpired tickets a user may hold at once; issuing more drops the oldest, so storage stays bounded. */
export const MAX_PENDING_TICKETS = 50;

/**
 * How long an ended session is remembered, so that no ticket is issued to it afterwards: longer
 * than any access token of that session can live (one issued by a refresh racing the revocation
 * lives 15 minutes from then).
 */
export const ENDED_SESSION_RETENTION_MS = (ACCESS_TOKEN_TTL_SECONDS + 45 * 60) * 1000;

/** Why the object refused an upgrade: the Worker turns it into the 401 envelope. */
export type TicketRefusal = { reason: string };

type ClientFrame = { type?: unknown };

/** What each socket carries across hibernation. `order` ranks connections oldest first (the cap closes the lowest). */
type Attachment = { connectedAt: number; order: number; sessionId: string };

const sessionTag = (sessionId: string) => `session:${sessionId}`;

/**
 * One per user (`idFromName(userId)`): that user's WebSocket connections, one per device, held
 * with the hibernation API, so an idle connection costs no running object; and the user's
 * pending connection tickets (hashed, single-use). Everything here is synchronous SQL on the
 * object's own storage, so consuming a ticket is atomic even when two upgrades race, and no
 * ticket can slip in between a session's end and the closing of its sockets.
 *
 * Each socket belongs to the session (refresh-token family) whose access token asked for its
 * ticket, tagged `session:<id>`; it is closed with 4001 when that session ends, 4003 when the
 * user is suspended, 4008 when a newer one exceeds the cap (REALTIME_CLOSE_CODES).
 */
export class RealtimeDO extends DurableObject<Env> {
  /**
   * `deliver` calls since this instance started (memory only, reset on eviction; a field, so not
   * callable over RPC): tests read it with runInDurableObject to count the object calls a change
   * costs, which the frames on a socket cannot show.
   */
  deliverCalls = 0;

  private schemaReady = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  /**
   * Created on first ticket or session end, not in the constructor: most objects only ever get
   * `deliver` calls (every member of every chat is published to, connected or not) and should
   * write nothing.
   */
  private sql(): SqlStorage {
    const sql = this.ctx.storage.sql;
    if (!this.schemaReady) {
      // `tickets` (no session column) held only tickets of at most 60 s: dropped, not migrated.
      sql.exec("DROP TABLE IF EXISTS tickets");
      sql.exec(
        "CREATE TABLE IF NOT EXISTS session_tickets (hash TEXT PRIMARY KEY, session_id TEXT NOT NULL, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL)",
      );
      sql.exec("CREATE TABLE IF NOT EXISTS ended_sessions (session_id TEXT PRIMARY KEY, ended_at INTEGER NOT NULL)");
      this.schemaReady = true;
    }
    return sql;
  }

  /**
   * Stores a ticket's hash for `sessionId` until `expiresAt` (epoch ms); expired ones are swept on
   * the way. False (nothing stored) when that session has ended.
   */
  issueTicket(hash: string, sessionId: string, expiresAt: number, now: number): boolean {
    const sql = this.sql();
    sql.exec("DELETE FROM ended_sessions WHERE ended_at <= ?", now - ENDED_SESSION_RETENTION_MS);
    if (sql.exec("SELECT 1 FROM ended_sessions WHERE session_id = ?", sessionId).toArray().length > 0) return false;
    sql.exec("DELETE FROM session_tickets WHERE expires_at <= ?", now);
    sql.exec(
      "INSERT INTO session_tickets (hash, session_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
      hash,
      sessionId,
      expiresAt,
      now,
    );
    sql.exec(
      "DELETE FROM session_tickets WHERE hash NOT IN (SELECT hash FROM session_tickets ORDER BY created_at DESC, rowid DESC LIMIT ?)",
      MAX_PENDING_TICKETS,
    );
    return true;
  }

  /**
   * The upgrade, forwarded by the Worker after it checked the `Upgrade` header. The ticket is
   * deleted by the same statement that reads it, so a second use finds nothing whatever the
   * timing; an expired one is consumed too (it could never become valid again). Past the cap,
   * the oldest connections are closed with 4008.
   */
  override async fetch(request: Request): Promise<Response> {
    const hash = request.headers.get(TICKET_HASH_HEADER) ?? "";
    const maxConnections = Number(request.headers.get(MAX_CONNECTIONS_HEADER));
    const row = this.sql()
      .exec<{ expires_at: number; session_id: string }>(
        "DELETE FROM session_tickets WHERE hash = ? RETURNING expires_at, session_id",
        hash,
      )
      .toArray()[0];
    if (!row) return refusal("The ticket is unknown or was already used; request a new one");
    if (row.expires_at <= Date.now()) return refusal("The ticket has expired; request a new one");

    const open = this.openSockets();
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [sessionTag(row.session_id)]);
    const order = Math.max(0, ...open.map(({ attachment }) => attachment.order)) + 1;
    server.serializeAttachment({ connectedAt: Date.now(), order, sessionId: row.session_id } satisfies Attachment);
    if (Number.isInteger(maxConnections) && maxConnections >= 1) {
      const excess = open.length + 1 - maxConnections;
      for (const { socket } of open.sort((a, b) => a.attachment.order - b.attachment.order).slice(0, Math.max(0, excess))) {
        closeWith(socket, REALTIME_CLOSE_CODES.tooManyConnections);
      }
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Ends sessions: remembers them (no ticket is issued to them afterwards), drops their pending
   * tickets and closes their sockets with 4001 `session_ended`. `everySocket` (log out
   * everywhere, password change) closes and drops those of every session of the user. Returns
   * how many sockets it closed.
   */
  endSessions(sessionIds: readonly string[], everySocket: boolean, now: number): number {
    const sql = this.sql();
    for (const sessionId of sessionIds) {
      sql.exec(
        "INSERT INTO ended_sessions (session_id, ended_at) VALUES (?, ?) ON CONFLICT (session_id) DO UPDATE SET ended_at = excluded.ended_at",
        sessionId,
        now,
      );
      sql.exec("DELETE FROM session_tickets WHERE session_id = ?", sessionId);
    }
    if (everySocket) sql.exec("DELETE FROM session_tickets");
    const sockets = everySocket
      ? this.ctx.getWebSockets()
      : sessionIds.flatMap((sessionId) => this.ctx.getWebSockets(sessionTag(sessionId)));
    return sockets.filter((socket) => closeWith(socket, REALTIME_CLOSE_CODES.sessionEnded)).length;
  }

  /** Closes every socket of the user with 4003 `account_suspended`; returns how many. */
  suspend(): number {
    return this.ctx.getWebSockets().filter((socket) => closeWith(socket, REALTIME_CLOSE_CODES.accountSuspended)).length;
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

  /** Open connections of this user (all devices); sockets already closing are not counted. */
  connections(): number {
    return this.openSockets().length;
  }

  private openSockets(): { socket: WebSocket; attachment: Attachment }[] {
    return this.ctx
      .getWebSockets()
      .filter((socket) => socket.readyState === WebSocket.OPEN)
      .map((socket) => {
        // Sockets accepted before sessions existed carry only `connectedAt`: they rank oldest.
        const attachment = (socket.deserializeAttachment() ?? {}) as Partial<Attachment>;
        return { socket, attachment: { connectedAt: 0, order: 0, sessionId: "", ...attachment } };
      });
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

/** Closes with one of the documented codes; false when the socket was already closing or gone. */
function closeWith(socket: WebSocket, close: { code: number; reason: string }): boolean {
  if (socket.readyState !== WebSocket.OPEN) return false;
  try {
    socket.close(close.code, close.reason);
    return true;
  } catch {
    return false;
  }
}

function refusal(reason: string): Response {
  return Response.json({ reason } satisfies TicketRefusal, { status: 401 });
}
