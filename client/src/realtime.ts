import { SignedOutError } from "./errors.js";
import { backoffDelay, sleep } from "./retry.js";
import type { ServerFrame } from "./types.js";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** Why the server ended the socket for good (API.md, "Realtime"): reconnecting would not help. */
export const FINAL_CLOSE_CODES: Record<number, "signedOut" | "suspended" | "replaced"> = {
  4001: "signedOut",
  4003: "suspended",
  4008: "replaced",
};

export type RealtimeOptions = {
  /** A ticketed URL for one socket (a ticket is single-use, so one per attempt). */
  socketUrl: () => Promise<string>;
  WebSocket: typeof WebSocket;
  onFrame: (frame: ServerFrame) => void;
  /** After every (re)connect, before its frames matter: the catch-up runs here. */
  onOpen: () => void;
  onState: (state: ConnectionState) => void;
  /** The server ended the session's sockets (4001/4003/4008) or the ticket was refused: the loop has stopped. */
  onEnded: (reason: "signedOut" | "suspended" | "replaced", detail: string) => void;
  pingIntervalMs: number;
  /** No frame for this long after a ping: the connection is dead even if no close came (a cut cable sends nothing). */
  pongTimeoutMs: number;
  backoff: { baseMs: number; maxMs: number };
};

type Attempt = { opened: boolean; final?: { reason: "signedOut" | "suspended" | "replaced"; detail: string } };

/** One socket at a time, reopened with exponential backoff and jitter until `stop()` or a final close code. */
export class RealtimeConnection {
  private running = false;
  private wake = new AbortController();
  private current: WebSocket | null = null;

  constructor(private readonly options: RealtimeOptions) {}

  /** Starts the loop; resolves once the first socket is open (or the loop ended). */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    return new Promise((resolve) => {
      void this.loop(resolve);
    });
  }

  stop(): void {
    this.running = false;
    this.wake.abort();
    this.current?.close(1000, "client stopped");
  }

  /** Skip the current backoff wait (e.g. the browser says it is online again). */
  reconnectNow(): void {
    this.wake.abort();
  }

  private async loop(firstOpen: () => void): Promise<void> {
    let failures = 0;
    while (this.running) {
      this.options.onState(failures === 0 ? "connecting" : "reconnecting");
      const attempt = await this.openOnce(firstOpen).catch((error): Attempt => {
        if (error instanceof SignedOutError) return { opened: false, final: { reason: "signedOut", detail: error.reason } };
        return { opened: false };
      });
      if (attempt.final) {
        this.running = false;
        this.options.onEnded(attempt.final.reason, attempt.final.detail);
        break;
      }
      failures = attempt.opened ? 1 : failures + 1;
      if (!this.running) break;
      this.options.onState("reconnecting");
      this.wake = new AbortController();
      await sleep(backoffDelay(failures, this.options.backoff), this.wake.signal);
    }
    this.options.onState("closed");
    firstOpen();
  }

  /** One socket from ticket to close; resolves when it is gone (closed, failed, or given up as dead). */
  private async openOnce(onOpen: () => void): Promise<Attempt> {
    const url = await this.options.socketUrl();
    if (!this.running) return { opened: false };
    const ws = new this.options.WebSocket(url);
    this.current = ws;
    return new Promise<Attempt>((resolve) => {
      let opened = false;
      let lastHeard = Date.now();
      let pinger: ReturnType<typeof setInterval> | undefined;
      const finish = (attempt: Attempt) => {
        clearInterval(pinger);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
        if (this.current === ws) this.current = null;
        resolve(attempt);
      };
      ws.onopen = () => {
        opened = true;
        lastHeard = Date.now();
        this.options.onState("open");
        onOpen();
        this.options.onOpen();
        pinger = setInterval(() => {
          // Silence past the deadline: abandon the socket rather than wait for a close that may never come.
          if (Date.now() - lastHeard > this.options.pingIntervalMs + this.options.pongTimeoutMs) finish({ opened });
          else if (ws.readyState === ws.OPEN) ws.send('{"type":"ping"}');
        }, this.options.pingIntervalMs);
      };
      ws.onmessage = (event) => {
        lastHeard = Date.now();
        if (typeof event.data !== "string") return;
        try {
          this.options.onFrame(JSON.parse(event.data) as ServerFrame);
        } catch (error) {
          console.error("credit-chat client: unreadable frame", error);
        }
      };
      ws.onclose = (event) => {
        const reason = FINAL_CLOSE_CODES[event.code];
        finish(reason ? { opened, final: { reason, detail: event.reason } } : { opened });
      };
      // An error is always followed by close in browsers; Node's WebSocket too, but do not rely on it.
      ws.onerror = () => setTimeout(() => finish({ opened }), 1_000);
    });
  }
}
