import { createServer, request as httpRequest, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";

/**
 * A proxy on 127.0.0.1 between the SDK and the real local server that misbehaves on a seeded
 * schedule: it answers 503 without forwarding, drops a request before forwarding it, forwards a
 * request and then cuts the connection so the answer is lost (the case idempotency exists for),
 * refuses socket upgrades and cuts open sockets after a random while.
 */
export type FaultRates = {
  unavailable: number;
  dropBefore: number;
  dropAfter: number;
  refuseUpgrade: number;
  socketLifeMs: [number, number];
};

export type FaultCounts = {
  forwarded: number;
  unavailable: number;
  dropBefore: number;
  dropAfter: number;
  upgrades: number;
  refusedUpgrades: number;
  cutSockets: number;
};

/** mulberry32: a small seeded generator, so a failing run can be replayed with its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function startFaultProxy(upstreamPort: number, seed: number, rates: FaultRates) {
  const random = seeded(seed);
  const counts: FaultCounts = {
    forwarded: 0,
    unavailable: 0,
    dropBefore: 0,
    dropAfter: 0,
    upgrades: 0,
    refusedUpgrades: 0,
    cutSockets: 0,
  };
  const sockets = new Set<Socket>();
  let faulty = true;

  const server = createServer((req, res) => {
    const roll = faulty ? random() : 1;
    if (roll < rates.unavailable) {
      counts.unavailable++;
      req.resume();
      res.writeHead(503, { "Content-Type": "text/plain", Connection: "close" }).end("proxy: upstream unavailable");
      return;
    }
    if (roll < rates.unavailable + rates.dropBefore) {
      counts.dropBefore++;
      req.socket.destroy();
      return;
    }
    const loseAnswer = roll < rates.unavailable + rates.dropBefore + rates.dropAfter;
    const upstream = httpRequest(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (loseAnswer) {
          // The server did the work; the client never hears about it.
          counts.dropAfter++;
          answer.resume();
          answer.on("end", () => req.socket.destroy());
          return;
        }
        counts.forwarded++;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => req.socket.destroy());
    req.pipe(upstream);
  });

  server.on("upgrade", (req: IncomingMessage, client: Socket, head: Buffer) => {
    if (faulty && random() < rates.refuseUpgrade) {
      counts.refusedUpgrades++;
      client.destroy();
      return;
    }
    counts.upgrades++;
    const upstream = connect(upstreamPort, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const [min, max] = rates.socketLifeMs;
    const cut = setTimeout(
      () => {
        if (!faulty) return;
        counts.cutSockets++;
        client.destroy();
        upstream.destroy();
      },
      min + random() * (max - min),
    );
    client.on("close", () => clearTimeout(cut));
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    counts,
    /** Stop misbehaving (the end of a test: let the last catch-up through). */
    heal: () => {
      faulty = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
