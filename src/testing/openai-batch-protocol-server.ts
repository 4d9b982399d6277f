import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A local server that speaks OpenAI's Batch API, written from OpenAI's public API reference, for tests and
 * benchmarks: `POST /v1/files` (multipart, `purpose=batch`), `POST /v1/batches`, `GET /v1/batches/{id}`,
 * `GET /v1/batches` and `GET /v1/files/{id}/content`. A batch moves validating → in_progress → finalizing →
 * completed as it is polled (or stays in progress while `hold` is set); each input line is answered by `answer`
 * (by default a real OpenAI-compatible server the line's body is posted to), and the output and error files have
 * the documented line shapes.
 */
export interface OpenAIBatchServerOptions {
  /** The Bearer key requests must carry. */
  readonly apiKey?: string;
  /** Answers one line's body: the status and the body of the response. Default: POST it to `upstream`. */
  readonly answer?: (body: Record<string, unknown>) => Promise<{ status: number; body: unknown }>;
  /** An OpenAI-compatible root (`http://host:port/v1`) to answer lines from. */
  readonly upstream?: string;
  /** Polls a batch spends in progress before it finalizes. Default 2. */
  readonly pollsToComplete?: number;
}

interface StoredBatch {
  readonly id: string;
  readonly inputFileId: string;
  status: string;
  polls: number;
  outputFileId: string | null;
  errorFileId: string | null;
  counts: { total: number; completed: number; failed: number };
}

export interface OpenAIBatchServer {
  readonly baseUrl: string;
  readonly files: Map<string, { purpose: string; name: string; content: string }>;
  readonly batches: Map<string, StoredBatch>;
  /** While true, batches stay in progress however often they are polled. */
  hold: boolean;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function errorJson(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: { message, type: "invalid_request_error", code: null } });
}

/** The `file` part of a multipart/form-data body, and its fields. */
function multipart(body: Buffer, contentType: string): { fields: Map<string, string>; file?: { name: string; content: string } } {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  const mark = `--${boundary?.[1] ?? boundary?.[2] ?? ""}`;
  const fields = new Map<string, string>();
  let file: { name: string; content: string } | undefined;
  for (const part of body.toString("utf8").split(mark)) {
    const split = part.indexOf("\r\n\r\n");
    if (split < 0) continue;
    const head = part.slice(0, split);
    const value = part.slice(split + 4).replace(/\r\n$/, "");
    const name = /name="([^"]+)"/.exec(head)?.[1];
    const filename = /filename="([^"]*)"/.exec(head)?.[1];
    if (name === "file" && filename !== undefined) file = { name: filename, content: value };
    else if (name) fields.set(name, value);
  }
  return { fields, ...(file ? { file } : {}) };
}

export async function startOpenAIBatchServer(options: OpenAIBatchServerOptions): Promise<OpenAIBatchServer> {
  const files: OpenAIBatchServer["files"] = new Map();
  const batches: OpenAIBatchServer["batches"] = new Map();
  const sockets = new Set<Socket>();
  const answer =
    options.answer ??
    (async (body: Record<string, unknown>) => {
      const response = await fetch(`${(options.upstream ?? "").replace(/\/+$/, "")}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) };
    });

  const view = (b: StoredBatch): Record<string, unknown> => ({
    id: b.id,
    object: "batch",
    endpoint: "/v1/chat/completions",
    input_file_id: b.inputFileId,
    completion_window: "24h",
    status: b.status,
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    request_counts: b.counts,
    errors: null,
  });

  /** Answers every line of a batch's input, then writes its output and error files. */
  const finish = async (b: StoredBatch): Promise<void> => {
    const input = files.get(b.inputFileId)?.content ?? "";
    const ok: string[] = [];
    const failed: string[] = [];
    for (const line of input.split("\n").filter((l) => l.trim() !== "")) {
      const request = JSON.parse(line) as { custom_id: string; body: Record<string, unknown> };
      const id = `batch_req_${randomUUID().replace(/-/g, "").slice(0, 20)}`;
      try {
        const result = await answer(request.body);
        const out = JSON.stringify({ id, custom_id: request.custom_id, response: { status_code: result.status, request_id: id, body: result.body }, error: null });
        (result.status < 300 ? ok : failed).push(out);
      } catch (err) {
        failed.push(JSON.stringify({ id, custom_id: request.custom_id, response: null, error: { code: "server_error", message: String(err) } }));
      }
    }
    const file = (content: string): string => {
      const fileId = `file-${randomUUID().replace(/-/g, "").slice(0, 24)}`;
      files.set(fileId, { purpose: "batch_output", name: `${fileId}.jsonl`, content });
      return fileId;
    };
    b.outputFileId = ok.length > 0 ? file(`${ok.join("\n")}\n`) : null;
    b.errorFileId = failed.length > 0 ? file(`${failed.join("\n")}\n`) : null;
    b.counts = { total: ok.length + failed.length, completed: ok.length, failed: failed.length };
    b.status = "completed";
  };

  const handle = async (req: IncomingMessage, raw: Buffer, res: ServerResponse): Promise<void> => {
    if (options.apiKey && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      errorJson(res, 401, "Incorrect API key provided");
      return;
    }
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method === "POST" && url.pathname === "/v1/files") {
      const { fields, file } = multipart(raw, req.headers["content-type"] ?? "");
      if (!file || !fields.get("purpose")) {
        errorJson(res, 400, "'file' and 'purpose' are required");
        return;
      }
      const id = `file-${randomUUID().replace(/-/g, "").slice(0, 24)}`;
      files.set(id, { purpose: fields.get("purpose") as string, name: file.name, content: file.content });
      sendJson(res, 200, { id, object: "file", bytes: Buffer.byteLength(file.content), filename: file.name, purpose: fields.get("purpose") });
      return;
    }
    if (req.method === "POST" && url.pathname === "/v1/batches") {
      const body = JSON.parse(raw.toString("utf8") || "{}") as { input_file_id?: string; endpoint?: string; completion_window?: string };
      const input = body.input_file_id ? files.get(body.input_file_id) : undefined;
      if (!input || input.purpose !== "batch") {
        errorJson(res, 400, `input_file_id ${String(body.input_file_id)} is not a file with purpose 'batch'`);
        return;
      }
      if (body.endpoint !== "/v1/chat/completions" || body.completion_window !== "24h") {
        errorJson(res, 400, "endpoint must be /v1/chat/completions and completion_window 24h");
        return;
      }
      const lines = input.content.split("\n").filter((l) => l.trim() !== "").length;
      const id = `batch_${randomUUID().replace(/-/g, "").slice(0, 24)}`;
      const batch: StoredBatch = { id, inputFileId: body.input_file_id as string, status: "validating", polls: 0, outputFileId: null, errorFileId: null, counts: { total: lines, completed: 0, failed: 0 } };
      batches.set(id, batch);
      sendJson(res, 200, view(batch));
      return;
    }
    if (req.method === "GET" && url.pathname === "/v1/batches") {
      sendJson(res, 200, { object: "list", data: [...batches.values()].reverse().map(view), has_more: false });
      return;
    }
    const batchMatch = /^\/v1\/batches\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && batchMatch) {
      const batch = batches.get(batchMatch[1] as string);
      if (!batch) {
        errorJson(res, 404, "No such batch");
        return;
      }
      if (!server.hold && batch.status !== "completed") {
        batch.polls++;
        if (batch.polls === 1) batch.status = "in_progress";
        if (batch.polls >= (options.pollsToComplete ?? 2)) await finish(batch);
      }
      sendJson(res, 200, view(batch));
      return;
    }
    const contentMatch = /^\/v1\/files\/([^/]+)\/content$/.exec(url.pathname);
    if (req.method === "GET" && contentMatch) {
      const file = files.get(contentMatch[1] as string);
      if (!file) {
        errorJson(res, 404, "No such file");
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(file.content);
      return;
    }
    errorJson(res, 404, `${req.method ?? ""} ${url.pathname} not found`);
  };

  const http: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      handle(req, Buffer.concat(chunks), res).catch((err: unknown) => {
        if (!res.headersSent) errorJson(res, 500, String(err));
        else res.end();
      });
    });
  });
  http.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", () => resolve());
  });
  const server: OpenAIBatchServer = {
    baseUrl: `http://127.0.0.1:${(http.address() as AddressInfo).port}/v1`,
    files,
    batches,
    hold: false,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  return server;
}
