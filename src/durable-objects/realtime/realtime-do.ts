import { DurableObject } from "cloudflare:workers";
import { createDb } from "../../db/client";
import { writePresence } from "../../db/presence";
import { invariant } from "../../lib/errors";
import { ID_PATTERN } from "../../lib/ids";
import { ACCESS_TOKEN_TTL_SECONDS } from "../../lib/jwt";
import { log } from "../../lib/log";
import { REALTIME_CLOSE_CODES } from "../../schemas/realtime";

/** The exact client ping text the runtime answers itself, without waking a hibernated object. */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/**
 * Headers on the Worker → object upgrade request: the SHA-256 (hex) of the ticket secret, the
 * connection cap, and the user this object is (for the presence row it writes in D1).
 */
export const TICKET_HASH_HEADER = "X-Realtime-Ticket-Hash";
export const MAX_CONNECTIONS_HEADER = "X-Realtime-Max-Connections";
export const USER_ID_HEADER = "X-Realtime-User-Id";

/** Unexpired tickets a user may hold at once; issuing more drops the oldest, so storage stays bounded. */
export const MAX_PENDING_TICKETS = 50;

/**
 * How long an ended session is remembered, so that no ticket is issued to it afterwards: longer
 * than any access token of that session can live (one issued by a refresh racing the revocation
 * lives 15 minutes from then).
 */
export const ENDED_SESSION_RETENTION_MS = (ACCESS_TOKEN_TTL_SECONDS + 45 * 60) * 1000;

/** Why the object refused an upgrade: the Worker turns a 401 into the 401 envelope, anything else into a 500. */
export type TicketRefusal = { reason: string };

/** This object's presence bookkeeping (one row): its stamp clock, and whether D1 may say "connected". */
type PresenceState = { user_id: string; changed_at: number; maybe_connected: number };

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
 *
 * It is also the only writer of the user's presence row in D1 (src/db/presence.ts): connected
 * before an upgrade answers, disconnected when the last socket goes (docs/realtime.md, "Presence").
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
   * Created on first ticket or session end, not in the constructor: many objects only ever get
   * `deliver` calls (the publishers other than transfers and sends call users with no socket
   * too) and should write nothing.
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
      sql.exec(
        "CREATE TABLE IF NOT EXISTS presence (id INTEGER PRIMARY KEY CHECK (id = 1), user_id TEXT NOT NULL, changed_at INTEGER NOT NULL, maybe_connected INTEGER NOT NULL)",
      );
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
   * timing; an expired one is consumed too (it could never become valid again). The user is
   * marked connected in D1 before the 101 goes back (the socket is accepted first, so a close of
   * another socket meanwhile still counts it). If that write fails, the upgrade fails whole: the
   * socket is dropped, the ticket is given back (unless its session ended meanwhile) and the
   * Worker answers 500, so no socket is open that the hot paths would think absent. Past the cap,
   * the oldest connections are closed with 4008.
   */
  override async fetch(request: Request): Promise<Response> {
    const hash = request.headers.get(TICKET_HASH_HEADER) ?? "";
    const maxConnections = Number(request.headers.get(MAX_CONNECTIONS_HEADER));
    const userId = request.headers.get(USER_ID_HEADER) ?? "";
    // Checked before the ticket is spent: the presence row is keyed by it.
    invariant(ID_PATTERN.test(userId), `upgrade without a valid ${USER_ID_HEADER}`);
    const row = this.sql()
      .exec<{ expires_at: number; session_id: string; created_at: number }>(
        "DELETE FROM session_tickets WHERE hash = ? RETURNING expires_at, session_id, created_at",
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
    try {
      await writePresence(createDb(this.env.DB), userId, true, this.nextPresenceStamp(userId, true));
    } catch (error) {
      closeWith(server, { code: 1011, reason: "presence unavailable" });
      this.sql().exec(
        "INSERT OR IGNORE INTO session_tickets (hash, session_id, expires_at, created_at) SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM ended_sessions WHERE session_id = ?)",
        hash,
        row.session_id,
        row.expires_at,
        row.created_at,
        row.session_id,
      );
      logPresenceFailure(userId, true, error);
      return Response.json({ reason: "Presence could not be recorded; retry" } satisfies TicketRefusal, { status: 503 });
    }
    if (Number.isInteger(maxConnections) && maxConnections >= 1) {
      const others = this.openSockets().filter(({ socket }) => socket !== server);
      const excess = others.length + 1 - maxConnections;
      for (const { socket } of others.sort((a, b) => a.attachment.order - b.attachment.order).slice(0, Math.max(0, excess))) {
        closeWith(socket, REALTIME_CLOSE_CODES.tooManyConnections);
      }
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * The next presence stamp: above the last one this object gave out (kept in its storage, so
   * hibernation loses nothing) and at least the wall clock. Taken synchronously when a state is
   * decided, so stamps follow the order of events here whatever order their D1 writes land in.
   * A "connected" stamp also records that D1 may say connected (see `deliver`).
   */
  private nextPresenceStamp(userId: string, connected: boolean): number {
    const last = this.presenceState();
    const stamp = Math.max(Date.now(), (last?.changed_at ?? 0) + 1);
    this.sql().exec(
      "INSERT INTO presence (id, user_id, changed_at, maybe_connected) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, changed_at = excluded.changed_at, maybe_connected = max(maybe_connected, excluded.maybe_connected)",
      userId,
      stamp,
      connected ? 1 : 0,
    );
    return stamp;
  }

  /**
   * Read without creating the schema: an object that never held a socket has no table, and no
   * presence row in D1 either.
   */
  private presenceState(): PresenceState | undefined {
    if (
      !this.schemaReady &&
      this.ctx.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'presence'").toArray().length === 0
    ) {
      return undefined;
    }
    return this.sql().exec<PresenceState>("SELECT user_id, changed_at, maybe_connected FROM presence WHERE id = 1").toArray()[0];
  }

  /**
   * Marks the user disconnected in D1 when no open socket is left (one being closed is no longer
   * open), unless D1 already says so as of this object's last stamp. A
   * failure is logged and leaves "connected" there: a false positive, which costs pushes until
   * a `deliver` that finds no socket tries again.
   */
  private async markDisconnectedIfIdle(): Promise<void> {
    if (this.openSockets().length > 0) return;
    const state = this.presenceState();
    if (!state?.maybe_connected) return;
    const stamp = this.nextPresenceStamp(state.user_id, false);
    try {
      await writePresence(createDb(this.env.DB), state.user_id, false, stamp);
      // Unless a connect stamped after this one (it may have written "connected" since).
      this.sql().exec("UPDATE presence SET maybe_connected = 0 WHERE id = 1 AND changed_at = ?", stamp);
    } catch (error) {
      logPresenceFailure(state.user_id, false, error);
    }
  }

  /**
   * Ends sessions: remembers them (no ticket is issued to them afterwards), drops their pending
   * tickets and closes their sockets with 4001 `session_ended`. `everySocket` (log out
   * everywhere, password change) closes and drops those of every session of the user. Returns
   * how many sockets it closed.
   */
  async endSessions(sessionIds: readonly string[], everySocket: boolean, now: number): Promise<number> {
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
    const closed = sockets.filter((socket) => closeWith(socket, REALTIME_CLOSE_CODES.sessionEnded)).length;
    await this.markDisconnectedIfIdle();
    return closed;
  }

  /** Closes every socket of the user with 4003 `account_suspended`; returns how many. */
  async suspend(): Promise<number> {
    const closed = this.ctx.getWebSockets().filter((socket) => closeWith(socket, REALTIME_CLOSE_CODES.accountSuspended)).length;
    await this.markDisconnectedIfIdle();
    return closed;
  }

  /**
   * Sends serialized frames, in order, to every open connection of this user: several events for
   * one user cost one call (a transfer's wallet.updated, message.created, transfer.received). A
   * socket that fails (closing, gone) is skipped so the others still get them; returns how many
   * sockets received every frame. Finding no socket where D1 may still say "connected" (a close
   * that never reached this object, such as a deploy dropping every socket, or a failed write)
   * corrects D1 in the background, so the hot paths stop calling.
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
    if (delivered === 0 && this.presenceState()?.maybe_connected) this.ctx.waitUntil(this.markDisconnectedIfIdle());
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

  override async webSocketClose(socket: WebSocket, code: number, reason: string): Promise<void> {
    try {
      // 1005/1006 are reserved: they describe an absent status and cannot be sent back.
      socket.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed (the runtime may have answered the close itself).
    }
    await this.markDisconnectedIfIdle();
  }

  override async webSocketError(socket: WebSocket): Promise<void> {
    try {
      socket.close(1011, "error");
    } catch {
      // Already gone.
    }
    await this.markDisconnectedIfIdle();
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

function logPresenceFailure(userId: string, connected: boolean, error: unknown) {
  log.error("realtime.presence_write_failed", { userId, connected, error });
}

function refusal(reason: string): Response {
  return Response.json({ reason } satisfies TicketRefusal, { status: 401 });
}
