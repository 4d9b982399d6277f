import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import { listenOnLocalPort } from "./listen.js";

/** A request the fake server received; `body` is parsed JSON when it parses, else the raw text. */
export interface FakeRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;
}

/** Answers one request. It may leave `res` open to simulate a hanging server. */
export type FakeHandler = (req: FakeRequest, res: ServerResponse) => void;

export interface FakeServer {
  /** API root, `http://127.0.0.1:<port>/v1`. */
  readonly baseUrl: string;
  readonly port: number;
  /** Every request received, in order. */
  readonly requests: FakeRequest[];
  /** Replaces the handler (tests reuse one server with different behaviours). */
  setHandler(handler: FakeHandler): void;
  /** Closes the server, cutting any connection left hanging. */
  close(): Promise<void>;
}

/** Starts a `node:http` server on 127.0.0.1 with a free port. */
export async function startFakeServer(handler: FakeHandler): Promise<FakeServer> {
  let current = handler;
  const requests: FakeRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // Not JSON: tests see the raw text.
      }
      const request: FakeRequest = {
        method: req.method ?? "",
        path: (req.url ?? "").replace(/^\/v1/, ""),
        headers: req.headers,
        body,
      };
      requests.push(request);
      current(request, res);
    });
  });
  const port = await listenOnLocalPort(server);
  return {
    baseUrl: `http://127.0.0.1:${String(port)}/v1`,
    port,
    requests,
    setHandler: (h) => {
      current = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends a JSON body with a status. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** A chat completion body in the OpenAI shape. */
export function chatBody(content: string, finishReason = "stop", usage = { prompt_tokens: 5, completion_tokens: 3 }): unknown {
  return {
    id: "chatcmpl-fake",
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finishReason }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  };
}
