import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A local server that speaks Anthropic's Messages API, written from Anthropic's public API reference, for tests and
 * benchmarks where the real API cannot be reached. It checks requests the way the API does (headers, required
 * fields, alternating turns, a forced tool's name), answers in the documented shapes (messages, content blocks,
 * usage with prompt-cache counts, the streamed event sequence, error bodies), keeps a fixed-window request limit
 * with the `anthropic-ratelimit-*` headers, and runs Message Batches through their lifecycle.
 *
 * The answers come from `answer`: by default a real OpenAI-compatible server (e.g. llama-server) the request is
 * translated for, so the text is a real model's; a tool call becomes a JSON-schema response format there.
 */

export interface AnthropicTurn {
  readonly role: "user" | "assistant";
  readonly content: string;
}

/** What the server asks its answer source. */
export interface AnthropicAnswerRequest {
  readonly model: string;
  readonly system: string;
  readonly messages: readonly AnthropicTurn[];
  readonly maxTokens: number;
  readonly temperature: number;
  readonly stop: readonly string[];
  /** The forced tool's input schema, when the request forces a tool. */
  readonly toolSchema?: Record<string, unknown>;
}

/** An answer: text (or the tool input as JSON text), why it stopped, and the tokens it took. */
export interface AnthropicAnswer {
  readonly text: string;
  readonly stopReason: "end_turn" | "max_tokens" | "stop_sequence";
  readonly inputTokens: number;
  readonly outputTokens: number;
}

export interface AnthropicProtocolServerOptions {
  /** The key requests must carry in `x-api-key`. */
  readonly apiKey: string;
  /** Where answers come from; see {@link upstreamAnswers}. */
  readonly answer: (request: AnthropicAnswerRequest) => Promise<AnthropicAnswer>;
  /** Fixed-window request limit (e.g. 50 per 10 000 ms); none when absent. */
  readonly limit?: { readonly requests: number; readonly windowMs: number };
  /** Polls of a batch before it ends. Default 2. */
  readonly batchPolls?: number;
}

export interface AnthropicProtocolServer {
  /** API root, `http://127.0.0.1:<port>/v1`. */
  readonly baseUrl: string;
  /** Requests to `POST /v1/messages` and what each was answered with. */
  readonly log: Array<{ readonly at: number; readonly status: number; readonly body: Record<string, unknown> }>;
  /** The next `n` message requests are answered 529 overloaded_error. */
  overloadNext(n: number): void;
  /** Batches created so far. */
  readonly batches: Map<string, { polls: number; requests: Array<{ custom_id: string; params: Record<string, unknown> }>; results?: string }>;
  close(): Promise<void>;
}

function errorBody(type: string, message: string): string {
  return JSON.stringify({ type: "error", error: { type, message } });
}

function approxTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/**
 * Answers from an OpenAI-compatible server (`baseUrl` with `/v1`): the system prompt and turns become chat
 * messages, a forced tool becomes a `json_schema` response format, and the server's usage is passed on.
 */
export function upstreamAnswers(baseUrl: string, model = "upstream"): (request: AnthropicAnswerRequest) => Promise<AnthropicAnswer> {
  return async (request) => {
    const body = {
      model,
      messages: [...(request.system !== "" ? [{ role: "system", content: request.system }] : []), ...request.messages],
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      ...(request.stop.length > 0 ? { stop: request.stop } : {}),
      ...(request.toolSchema ? { response_format: { type: "json_schema", json_schema: { name: "tool", schema: request.toolSchema, strict: true } } } : {}),
    };
    const response = await fetch(`${baseUrl.replace(/\/+$/, "")}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`upstream answered ${response.status}: ${await response.text()}`);
    const json = (await response.json()) as {
      choices: Array<{ message: { content: string | null }; finish_reason: string | null }>;
      usage?: { prompt_tokens?: number; completion_tokens?: number };
    };
    const choice = json.choices[0];
    return {
      text: choice?.message.content ?? "",
      stopReason: choice?.finish_reason === "length" ? "max_tokens" : "end_turn",
      inputTokens: json.usage?.prompt_tokens ?? 0,
      outputTokens: json.usage?.completion_tokens ?? 0,
    };
  };
}

interface ParsedRequest {
  readonly model: string;
  readonly system: string;
  readonly cacheableTokens: number;
  readonly cacheKey: string | undefined;
  readonly answerRequest: AnthropicAnswerRequest;
  readonly toolName: string | undefined;
  readonly stream: boolean;
}

/** Validates a Messages request as the API does; returns the problem's text when it is invalid. */
function parseRequest(body: unknown): ParsedRequest | string {
  if (typeof body !== "object" || body === null) return "body: must be a JSON object";
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string" || b.model === "") return "model: Field required";
  if (typeof b.max_tokens !== "number" || !Number.isInteger(b.max_tokens) || b.max_tokens < 1) return "max_tokens: Field required";
  if (!Array.isArray(b.messages) || b.messages.length === 0) return "messages: at least one message is required";
  const turns: AnthropicTurn[] = [];
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const msg = m as { role?: unknown; content?: unknown };
    if (msg.role !== "user" && msg.role !== "assistant") return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    const content = typeof msg.content === "string" ? msg.content : Array.isArray(msg.content) ? (msg.content as Array<{ text?: string }>).map((c) => c.text ?? "").join("") : undefined;
    if (content === undefined) return `messages.${i}.content: Field required`;
    if (i === 0 && msg.role !== "user") return "messages: first message must use the \"user\" role";
    if (i > 0 && turns[i - 1]?.role === msg.role) return "messages: roles must alternate between \"user\" and \"assistant\"";
    turns.push({ role: msg.role, content });
  }
  if (b.temperature !== undefined && (typeof b.temperature !== "number" || b.temperature < 0 || b.temperature > 1)) return "temperature: Input should be less than or equal to 1";
  let system = "";
  let systemCached = false;
  if (typeof b.system === "string") system = b.system;
  else if (Array.isArray(b.system)) {
    for (const block of b.system as Array<{ type?: string; text?: string; cache_control?: unknown }>) {
      if (block.type !== "text" || typeof block.text !== "string") return "system: blocks must be text blocks";
      system += block.text;
      if (block.cache_control !== undefined) systemCached = true;
    }
  }
  let toolSchema: Record<string, unknown> | undefined;
  let toolName: string | undefined;
  let toolCached = false;
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) return "tools: Input should be a valid list";
    const choice = b.tool_choice as { type?: string; name?: string } | undefined;
    if (choice?.type === "tool") {
      const tool = (b.tools as Array<{ name?: string; input_schema?: Record<string, unknown>; cache_control?: unknown }>).find((t) => t.name === choice.name);
      if (!tool) return `tool_choice: tool '${String(choice.name)}' not found in tools`;
      if (tool.input_schema?.type !== "object") return "tools.0.input_schema: type must be 'object'";
      toolSchema = tool.input_schema;
      toolName = tool.name;
      toolCached = tool.cache_control !== undefined;
    }
  }
  const prefix = JSON.stringify({ tools: b.tools ?? null, system });
  const cached = systemCached || toolCached;
  return {
    model: b.model,
    system,
    cacheableTokens: cached ? approxTokens(prefix) : 0,
    cacheKey: cached ? createHash("sha256").update(`${b.model}\n${prefix}`).digest("hex") : undefined,
    answerRequest: {
      model: b.model,
      system,
      messages: turns,
      maxTokens: b.max_tokens,
      temperature: typeof b.temperature === "number" ? b.temperature : 1,
      stop: Array.isArray(b.stop_sequences) ? (b.stop_sequences as string[]) : [],
      ...(toolSchema ? { toolSchema } : {}),
    },
    toolName,
    stream: b.stream === true,
  };
}

export async function startAnthropicProtocolServer(options: AnthropicProtocolServerOptions): Promise<AnthropicProtocolServer> {
  const log: AnthropicProtocolServer["log"] = [];
  const batches: AnthropicProtocolServer["batches"] = new Map();
  const caches = new Set<string>();
  const sockets = new Set<Socket>();
  let overloads = 0;
  let windowStart = Date.now();
  let windowCount = 0;
  let base = "";

  /** The rate-limit headers as of now: a response carries those of the moment its request was admitted. */
  const rateHeaders = (): Record<string, string> => {
    if (!options.limit) return {};
    const reset = new Date(windowStart + options.limit.windowMs).toISOString();
    return {
      "anthropic-ratelimit-requests-limit": String(options.limit.requests),
      "anthropic-ratelimit-requests-remaining": String(Math.max(0, options.limit.requests - windowCount)),
      "anthropic-ratelimit-requests-reset": reset,
    };
  };

  /** Counts a request in the current window; false when the window's limit is spent. */
  const admit = (): boolean => {
    if (!options.limit) return true;
    const now = Date.now();
    if (now >= windowStart + options.limit.windowMs) {
      windowStart = now - ((now - windowStart) % options.limit.windowMs);
      windowCount = 0;
    }
    if (windowCount >= options.limit.requests) return false;
    windowCount++;
    return true;
  };

  /** Makes a Message for a parsed request (shared by /messages and batches). */
  const makeMessage = async (parsed: ParsedRequest): Promise<Record<string, unknown>> => {
    const answer = await options.answer(parsed.answerRequest);
    let cacheRead = 0;
    let cacheWrite = 0;
    if (parsed.cacheKey !== undefined) {
      if (caches.has(parsed.cacheKey)) cacheRead = parsed.cacheableTokens;
      else {
        caches.add(parsed.cacheKey);
        cacheWrite = parsed.cacheableTokens;
      }
    }
    let content: Array<Record<string, unknown>>;
    if (parsed.toolName !== undefined) {
      let input: unknown;
      try {
        input = JSON.parse(answer.text);
      } catch {
        input = {};
      }
      content = [{ type: "tool_use", id: `toolu_${randomUUID().replace(/-/g, "").slice(0, 24)}`, name: parsed.toolName, input }];
    } else {
      content = [{ type: "text", text: answer.text }];
    }
    return {
      id: `msg_${randomUUID().replace(/-/g, "").slice(0, 24)}`,
      type: "message",
      role: "assistant",
      model: parsed.model,
      content,
      stop_reason: parsed.toolName !== undefined && answer.stopReason === "end_turn" ? "tool_use" : answer.stopReason,
      stop_sequence: null,
      usage: {
        input_tokens: Math.max(0, answer.inputTokens - cacheRead - cacheWrite),
        output_tokens: answer.outputTokens,
        cache_creation_input_tokens: cacheWrite,
        cache_read_input_tokens: cacheRead,
      },
    };
  };

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}, rate = rateHeaders()): void => {
    res.writeHead(status, { "content-type": "application/json", "request-id": `req_${randomUUID()}`, ...rate, ...headers });
    res.end(body);
  };

  const stream = (res: ServerResponse, message: Record<string, unknown>, rate: Record<string, string>): void => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...rate });
    const event = (type: string, data: Record<string, unknown>): void => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    };
    const usage = message.usage as Record<string, number>;
    event("message_start", { message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } });
    event("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
    event("ping", {});
    const text = String((message.content as Array<{ text?: string }>)[0]?.text ?? "");
    for (let i = 0; i < text.length; i += 8) event("content_block_delta", { index: 0, delta: { type: "text_delta", text: text.slice(i, i + 8) } });
    event("content_block_stop", { index: 0 });
    event("message_delta", { delta: { stop_reason: message.stop_reason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } });
    event("message_stop", {});
    res.end();
  };

  const handle = async (req: IncomingMessage, body: unknown, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.headers["x-api-key"] !== options.apiKey) {
      send(res, 401, errorBody("authentication_error", "invalid x-api-key"));
      return;
    }
    if (typeof req.headers["anthropic-version"] !== "string") {
      send(res, 400, errorBody("invalid_request_error", "anthropic-version: header is required"));
      return;
    }
    if (req.method === "POST" && url.pathname === "/v1/messages") {
      const parsed = parseRequest(body);
      if (typeof parsed === "string") {
        log.push({ at: Date.now(), status: 400, body: body as Record<string, unknown> });
        send(res, 400, errorBody("invalid_request_error", parsed));
        return;
      }
      if (overloads > 0) {
        overloads--;
        log.push({ at: Date.now(), status: 529, body: body as Record<string, unknown> });
        send(res, 529, errorBody("overloaded_error", "Overloaded"));
        return;
      }
      if (!admit()) {
        const wait = Math.max(1, Math.ceil((windowStart + (options.limit?.windowMs ?? 0) - Date.now()) / 1000));
        log.push({ at: Date.now(), status: 429, body: body as Record<string, unknown> });
        send(res, 429, errorBody("rate_limit_error", "Number of requests has exceeded your rate limit"), { "retry-after": String(wait) });
        return;
      }
      log.push({ at: Date.now(), status: 200, body: body as Record<string, unknown> });
      const admittedWith = rateHeaders();
      const message = await makeMessage(parsed);
      if (parsed.stream) stream(res, message, admittedWith);
      else send(res, 200, JSON.stringify(message), {}, admittedWith);
      return;
    }
    if (req.method === "POST" && url.pathname === "/v1/messages/batches") {
      const requests = (body as { requests?: unknown }).requests;
      if (!Array.isArray(requests) || requests.length === 0) {
        send(res, 400, errorBody("invalid_request_error", "requests: at least one request is required"));
        return;
      }
      const id = `msgbatch_${randomUUID().replace(/-/g, "").slice(0, 24)}`;
      batches.set(id, { polls: 0, requests: requests as Array<{ custom_id: string; params: Record<string, unknown> }> });
      send(res, 200, JSON.stringify(batchView(id)));
      return;
    }
    const batchMatch = /^\/v1\/messages\/batches\/([^/]+)(\/results)?$/.exec(url.pathname);
    if (req.method === "GET" && batchMatch) {
      const batch = batches.get(batchMatch[1] as string);
      if (!batch) {
        send(res, 404, errorBody("not_found_error", `batch ${batchMatch[1]} not found`));
        return;
      }
      if (batchMatch[2]) {
        if (batch.results === undefined) {
          send(res, 400, errorBody("invalid_request_error", "batch has not ended"));
          return;
        }
        res.writeHead(200, { "content-type": "application/binary" });
        res.end(batch.results);
        return;
      }
      batch.polls++;
      if (batch.polls >= (options.batchPolls ?? 2) && batch.results === undefined) {
        const lines: string[] = [];
        for (const r of batch.requests) {
          const parsed = parseRequest(r.params);
          if (typeof parsed === "string") {
            lines.push(JSON.stringify({ custom_id: r.custom_id, result: { type: "errored", error: { type: "error", error: { type: "invalid_request_error", message: parsed } } } }));
            continue;
          }
          try {
            lines.push(JSON.stringify({ custom_id: r.custom_id, result: { type: "succeeded", message: await makeMessage(parsed) } }));
          } catch (err) {
            lines.push(JSON.stringify({ custom_id: r.custom_id, result: { type: "errored", error: { type: "error", error: { type: "api_error", message: String(err) } } } }));
          }
        }
        batch.results = `${lines.join("\n")}\n`;
      }
      send(res, 200, JSON.stringify(batchView(batchMatch[1] as string)));
      return;
    }
    send(res, 404, errorBody("not_found_error", `${req.method ?? ""} ${url.pathname} not found`));
  };

  const batchView = (id: string): Record<string, unknown> => {
    const batch = batches.get(id);
    const ended = batch?.results !== undefined;
    const lines = ended ? (batch?.results ?? "").trim().split("\n") : [];
    const count = (type: string): number => lines.filter((l) => (JSON.parse(l) as { result: { type: string } }).result.type === type).length;
    return {
      id,
      type: "message_batch",
      processing_status: ended ? "ended" : "in_progress",
      request_counts: {
        processing: ended ? 0 : (batch?.requests.length ?? 0),
        succeeded: count("succeeded"),
        errored: count("errored"),
        canceled: 0,
        expired: 0,
      },
      results_url: ended ? `${base}/messages/batches/${id}/results` : null,
      created_at: new Date().toISOString(),
    };
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: unknown;
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        body = text === "" ? {} : JSON.parse(text);
      } catch {
        send(res, 400, errorBody("invalid_request_error", "body is not valid JSON"));
        return;
      }
      handle(req, body, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, errorBody("api_error", String(err)));
        else res.end();
      });
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return {
    baseUrl: base,
    log,
    batches,
    overloadNext: (n) => {
      overloads += n;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
