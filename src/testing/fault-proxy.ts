import { mulberry32 } from "../util/seeded-random.js";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A fault-injecting HTTP proxy for reliability tests: it sits in front of a real server (llama-server, vLLM) and,
 * per request, either passes it through or answers with a fault drawn from a seeded generator, so a test or a
 * bench can throw rate limits, server errors, hangs, dropped connections and broken bodies at a real client and
 * reproduce the same sequence of faults with the same seed.
 */

/** What the proxy may do with one request. */
export const FAULT_KINDS = ["pass", "429", "500", "502", "503", "hang", "drop", "malformed", "truncated"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Relative weights of each fault kind; kinds left out never happen. */
export type FaultWeights = Partial<Record<FaultKind, number>>;

export interface FaultProxyOptions {
  /** Upstream root, e.g. `http://127.0.0.1:8080` (paths are forwarded as they come). */
  readonly upstream: string;
  /** Seed of the fault sequence. */
  readonly seed: number;
  /** Weights of the fault kinds. Default: everything passes. */
  readonly weights?: FaultWeights;
  /** `Retry-After` seconds sent with 429s. Default 1. */
  readonly retryAfterSeconds?: number;
  /** How long a `hang` holds the connection before closing it (the client's timeout should fire first). Default 60 000. */
  readonly hangMs?: number;
}

export interface FaultProxy {
  /** The proxy's root with the upstream's path, e.g. `http://127.0.0.1:41234/v1` for an upstream `/v1` root. */
  readonly url: string;
  readonly port: number;
  /** Requests per fault kind so far. */
  counts(): Record<FaultKind, number>;
  /** Replaces the weights (e.g. a server that comes back: `{ pass: 1 }`). */
  setWeights(weights: FaultWeights): void;
  close(): Promise<void>;
}

/** mulberry32 (src/util/seeded-random.ts): the same seed gives the same fault sequence. */
export const seededRandom = mulberry32;

function pick(weights: FaultWeights, random: () => number): FaultKind {
  const entries = FAULT_KINDS.map((kind) => [kind, Math.max(0, weights[kind] ?? 0)] as const).filter(([, w]) => w > 0);
  const total = entries.reduce((sum, [, w]) => sum + w, 0);
  if (total === 0) return "pass";
  let at = random() * total;
  for (const [kind, w] of entries) {
    at -= w;
    if (at < 0) return kind;
  }
  return entries[entries.length - 1]?.[0] ?? "pass";
}

function errorBody(status: number, message: string): string {
  return JSON.stringify({ error: { message, type: status === 429 ? "rate_limit_exceeded" : "server_error", code: status } });
}

/** Starts a proxy on a free port of 127.0.0.1. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(options.upstream);
  const random = seededRandom(options.seed);
  let weights: FaultWeights = options.weights ?? { pass: 1 };
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const forward = (req: IncomingMessage, body: Buffer, res: ServerResponse, truncate: boolean): void => {
    const upstreamRequest = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (upstreamResponse) => {
        res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        if (!truncate) {
          upstreamResponse.pipe(res);
          return;
        }
        // Pass the first part of the body, then cut the connection: a stream or document that ends midway.
        let sent = 0;
        upstreamResponse.on("data", (chunk: Buffer) => {
          if (sent >= 0) {
            const room = Math.max(1, Math.floor(chunk.length / 2));
            res.write(chunk.subarray(0, room));
            sent = -1;
            res.socket?.destroy();
            upstreamResponse.destroy();
          }
        });
      },
    );
    upstreamRequest.on("error", () => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end(errorBody(502, "fault proxy: upstream unreachable"));
    });
    upstreamRequest.end(body);
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const kind = pick(weights, random);
      counts[kind]++;
      switch (kind) {
        case "pass":
          forward(req, body, res, false);
          return;
        case "truncated":
          forward(req, body, res, true);
          return;
        case "429":
          res.writeHead(429, { "content-type": "application/json", "retry-after": String(options.retryAfterSeconds ?? 1) });
          res.end(errorBody(429, "fault proxy: rate limited"));
          return;
        case "500":
        case "502":
        case "503":
          res.writeHead(Number(kind), { "content-type": "application/json" });
          res.end(errorBody(Number(kind), `fault proxy: injected ${kind}`));
          return;
        case "hang": {
          const timer = setTimeout(() => {
            timers.delete(timer);
            req.socket.destroy();
          }, options.hangMs ?? 60_000);
          timers.add(timer);
          return;
        }
        case "drop":
          req.socket.destroy();
          return;
        case "malformed":
          res.writeHead(200, { "content-type": "application/json" });
          res.end('{"id":"chatcmpl-fault","choices":[{"index":0,"message":{"role":"assistant","content":');
          return;
      }
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const path = upstream.pathname.replace(/\/+$/, "");
  return {
    url: `http://127.0.0.1:${port}${path}`,
    port,
    counts: () => ({ ...counts }),
    setWeights: (next) => {
      weights = next;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
