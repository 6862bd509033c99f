import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach } from "vitest";
import { app } from "../../src/app";
import { call } from "./http";

/** A pushed frame as parsed JSON; tests assert on its shape. */
export type Frame = any;

/** A client end of a realtime WebSocket that keeps every frame it receives, in order. */
export type TestSocket = Awaited<ReturnType<typeof openSocket>>;

type Vars = Partial<Record<keyof Env, string>>;

/**
 * Upgrade request straight to the Worker, as a browser would send it after getting a ticket;
 * with `vars`, through the app with those vars overridden (the bindings stay the real ones).
 */
export function upgrade(ticket: string | null, headers: Record<string, string> = { Upgrade: "websocket" }, vars?: Vars) {
  const query = ticket === null ? "" : `?ticket=${encodeURIComponent(ticket)}`;
  const request = new Request(`http://localhost/api/v1/realtime${query}`, { headers });
  return vars ? app.fetch(request, { ...env, ...vars }, createExecutionContext()) : exports.default.fetch(request);
}

export async function ticketFor(token: string): Promise<string> {
  const res = await call("POST", "/api/v1/realtime/tickets", { token });
  if (res.status !== 201) throw new Error(`ticket: ${res.status} ${res.text}`);
  return res.json.data.ticket;
}

/** Opens a connection with `ticket`, or throws with the refusal it got. */
export async function openSocket(ticket: string, vars?: Vars) {
  const res = await upgrade(ticket, { Upgrade: "websocket" }, vars);
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`upgrade: ${res.status} ${await res.text()}`);
  ws.accept();
  const frames: Frame[] = [];
  let read = 0;
  let wake: (() => void) | null = null;
  let closed = false;
  let closeEvent: { code: number; reason: string; at: number } | null = null;
  const closeWaiters: (() => void)[] = [];
  ws.addEventListener("message", (event) => {
    frames.push(JSON.parse(String(event.data)));
    wake?.();
  });
  ws.addEventListener("close", (event) => {
    closed = true;
    closeEvent = { code: event.code, reason: event.reason, at: Date.now() };
    wake?.();
    for (const resolve of closeWaiters.splice(0)) resolve();
  });

  /** The next frame not yet read (waits up to `timeoutMs`). */
  async function next(timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (read >= frames.length) {
      if (closed) throw new Error("socket closed while waiting for a frame");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms (got ${JSON.stringify(frames)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
    return frames[read++];
  }

  /** The next `count` frames, sorted by type (events published separately may arrive in any order). */
  async function take(count: number, timeoutMs = 5_000): Promise<Frame[]> {
    const out: Frame[] = [];
    for (let i = 0; i < count; i += 1) out.push(await next(timeoutMs));
    return out.sort((a, b) => String(a.type).localeCompare(String(b.type)));
  }

  /** Resolves if nothing more arrives within `ms`; fails with what did arrive otherwise. */
  async function expectSilence(ms = 300) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (frames.length > read) throw new Error(`unexpected frames ${JSON.stringify(frames.slice(read))}`);
  }

  /**
   * The close the server sent: waits up to `timeoutMs` for it and fails if none came. `at` is
   * when the close event fired (Date.now()), to hold it against a deadline.
   */
  async function closedBy(timeoutMs = 2_000): Promise<{ code: number; reason: string; at: number }> {
    if (!closeEvent) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        closeWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (!closeEvent) throw new Error(`the socket was not closed within ${timeoutMs} ms`);
    return closeEvent;
  }

  return {
    ws,
    frames,
    next,
    take,
    expectSilence,
    closedBy,
    send: (text: string) => ws.send(text),
    isClosed: () => closed,
    close: () => {
      try {
        ws.close(1000, "done");
      } catch {
        // already closed
      }
    },
  };
}

/** A ticket and a connection for the holder of `token` (one device). */
export async function connectAs(token: string) {
  return openSocket(await ticketFor(token));
}

/**
 * For a test file: every socket it opens through `connect` (or pushes to `opened`) is closed
 * after each test, so no test leaves connections behind for the next.
 */
export function closeSocketsAfterEach() {
  const opened: TestSocket[] = [];
  afterEach(() => {
    for (const socket of opened.splice(0)) socket.close();
  });
  return {
    opened,
    connect: async (token: string) => {
      const socket = await connectAs(token);
      opened.push(socket);
      return socket;
    },
  };
}
