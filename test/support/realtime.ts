import { exports } from "cloudflare:workers";
import { call } from "./http";

/** A pushed frame as parsed JSON; tests assert on its shape. */
export type Frame = any;

/** A client end of a realtime WebSocket that keeps every frame it receives, in order. */
export type TestSocket = Awaited<ReturnType<typeof openSocket>>;

/** Upgrade request straight to the Worker, as a browser would send it after getting a ticket. */
export function upgrade(ticket: string | null, headers: Record<string, string> = { Upgrade: "websocket" }) {
  const query = ticket === null ? "" : `?ticket=${encodeURIComponent(ticket)}`;
  return exports.default.fetch(new Request(`http://localhost/api/v1/realtime${query}`, { headers }));
}

export async function ticketFor(token: string): Promise<string> {
  const res = await call("POST", "/api/v1/realtime/tickets", { token });
  if (res.status !== 201) throw new Error(`ticket: ${res.status} ${res.text}`);
  return res.json.data.ticket;
}

/** Opens a connection with `ticket`, or throws with the refusal it got. */
export async function openSocket(ticket: string) {
  const res = await upgrade(ticket);
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`upgrade: ${res.status} ${await res.text()}`);
  ws.accept();
  const frames: Frame[] = [];
  let read = 0;
  let wake: (() => void) | null = null;
  let closed = false;
  ws.addEventListener("message", (event) => {
    frames.push(JSON.parse(String(event.data)));
    wake?.();
  });
  ws.addEventListener("close", () => {
    closed = true;
    wake?.();
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

  return {
    ws,
    frames,
    next,
    take,
    expectSilence,
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
