import { CapabilityMissingError } from "../../spec/language-model.js";
import { IterAlignError } from "../../spec/errors.js";
import type {
  Capability,
  ChatMessage,
  FinishReason,
  GenerateObjectRequest,
  GenerateObjectResult,
  GenerateRequest,
  GenerateResult,
  GenerationParams,
  LanguageModel,
  TokenUsage,
} from "../../spec/language-model.js";
import { canonicalJson, sha256Hex } from "../../util/canonical-json.js";
import { endpointUrl } from "../../util/url.js";
import { HttpCall, displayUrl } from "../http/http-call.js";
import { sseData } from "../http/sse.js";
import type { RateLimitObserver } from "../provider.js";
import { generateObjectWith } from "../structured-output.js";
import type { BatchCollector } from "../http/batch.js";
import { MessageSchema, StreamEventSchema, type AnthropicMessage, type AnthropicUsage } from "./wire.js";

/** Settings of a model behind Anthropic's Messages API. */
export interface AnthropicModelOptions {
  /** API root including `/v1`. Default `https://api.anthropic.com/v1`. */
  readonly baseUrl?: string;
  readonly model: string;
  /** Sent as `x-api-key`; never included in errors. */
  readonly apiKey?: string;
  /** The `anthropic-version` header. Default `2023-06-01`. */
  readonly anthropicVersion?: string;
  /** Deadline of one HTTP call. Default 600 000 ms. */
  readonly timeoutMs?: number;
  /** Mark the shared prefix (tool schema and system prompt) with `cache_control`. Default true. */
  readonly promptCaching?: boolean;
  /** Defaults for every call; a request's own values win. */
  readonly defaults?: GenerationParams;
  /** Receives every response's status and headers (`anthropic-ratelimit-*`, `retry-after`). */
  readonly rateLimits?: RateLimitObserver;
  /** Sends non-streaming calls as Message Batches instead of one request each. */
  readonly batch?: BatchCollector;
}

const DEFAULT_MAX_TOKENS = 1024;

/** A forced tool call: how structured output is asked for on this API. */
interface ToolSpec {
  readonly name: string;
  readonly inputSchema: Record<string, unknown>;
}

/** The request body of `POST /messages` (and of a batch request's `params`). */
export function messagesBody(
  model: string,
  messages: readonly ChatMessage[],
  params: GenerationParams,
  options: { tool?: ToolSpec; stream?: boolean; promptCaching: boolean },
): Record<string, unknown> {
  const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
  const turns: Array<{ role: "user" | "assistant"; content: string }> = [];
  for (const m of messages) {
    if (m.role === "system") continue;
    const last = turns[turns.length - 1];
    // The API wants user and assistant turns to alternate: consecutive turns of one role become one.
    if (last && last.role === m.role) last.content = `${last.content}\n\n${m.content}`;
    else turns.push({ role: m.role, content: m.content });
  }
  if (turns[0]?.role !== "user") throw new IterAlignError("USAGE", "anthropic: a conversation must start with a user message");
  const cache = options.promptCaching ? { cache_control: { type: "ephemeral" } } : {};
  // The cache holds the prefix up to the marked block, in the order tools, system, messages: marking the system
  // block caches the tool schema and the instructions; with no system prompt, the tool carries the mark.
  return {
    model,
    max_tokens: params.maxTokens ?? DEFAULT_MAX_TOKENS,
    ...(system !== "" ? { system: [{ type: "text", text: system, ...cache }] } : {}),
    messages: turns,
    temperature: params.temperature ?? 0,
    ...(params.topP !== undefined && (params.temperature ?? 0) > 0 ? { top_p: params.topP } : {}),
    ...(params.stop !== undefined && params.stop.length > 0 ? { stop_sequences: params.stop } : {}),
    ...(options.tool
      ? {
          tools: [
            {
              name: options.tool.name,
              description: "Give your answer as this tool's input.",
              input_schema: options.tool.inputSchema,
              ...(system === "" ? cache : {}),
            },
          ],
          tool_choice: { type: "tool", name: options.tool.name },
        }
      : {}),
    ...(options.stream ? { stream: true } : {}),
  };
}

/** Token usage as iteralign counts it: every prompt token, with the cached and cache-written parts. */
export function anthropicUsage(usage: AnthropicUsage | undefined): TokenUsage {
  const read = usage?.cache_read_input_tokens ?? 0;
  const written = usage?.cache_creation_input_tokens ?? 0;
  return {
    promptTokens: (usage?.input_tokens ?? 0) + read + written,
    completionTokens: usage?.output_tokens ?? 0,
    ...(read > 0 ? { cachedPromptTokens: read } : {}),
    ...(written > 0 ? { cacheWritePromptTokens: written } : {}),
  };
}

function finishReason(stopReason: string | null | undefined): FinishReason {
  return stopReason === "max_tokens" ? "length" : "stop";
}

/** The text of an answer: its text blocks, or the named tool call's input as JSON. */
export function messageText(message: AnthropicMessage, tool: string | undefined): string {
  if (tool !== undefined) {
    const call = message.content.find((b) => b.type === "tool_use" && (b as { name?: string }).name === tool) as { input?: unknown } | undefined;
    return call === undefined ? "" : JSON.stringify(call.input ?? null);
  }
  return message.content.map((b) => (b.type === "text" ? (b as { text: string }).text : "")).join("");
}

/** A tool name the API accepts (`^[a-zA-Z0-9_-]{1,64}$`). */
function toolName(name: string | undefined): string {
  const cleaned = (name ?? "answer").replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return cleaned.length > 0 ? cleaned : "answer";
}

/** The native Anthropic provider: Claude through the Messages API, with tool-use structured output and prompt caching. */
export class AnthropicModel implements LanguageModel {
  readonly provider = "anthropic";
  readonly modelId: string;
  readonly fingerprint: string;
  readonly capabilities: ReadonlySet<Capability> = new Set<Capability>(["generate", "generateObject", "stream"]);
  private readonly baseUrl: string;
  private readonly secrets: readonly string[];

  constructor(private readonly options: AnthropicModelOptions) {
    this.baseUrl = (options.baseUrl ?? "https://api.anthropic.com/v1").replace(/\/+$/, "");
    const url = new URL(this.baseUrl);
    if (url.username !== "" || url.password !== "") throw new IterAlignError("USAGE", "anthropic baseUrl must not contain a user name or password");
    this.modelId = options.model;
    this.fingerprint = sha256Hex(canonicalJson({ baseUrl: displayUrl(this.baseUrl) }));
    this.secrets = options.apiKey ? [options.apiKey] : [];
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    // Anthropic's API has no chat template to render a conversation for classification with.
    if (request.classify) return Promise.reject(new CapabilityMissingError(this, "classify", "a guard judge (style llama-guard, shieldgemma or qwen3guard)"));
    return this.send(request.messages, request, undefined, request.onText);
  }

  generateObject<T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> {
    const name = toolName(request.schemaName);
    return generateObjectWith(
      {
        label: `${this.modelId} at ${displayUrl(this.baseUrl)}`,
        enforcesSchema: true,
        decode: (messages, jsonSchema) => this.send(messages, request, { name, inputSchema: jsonSchema }, undefined),
      },
      request,
    );
  }

  async close(): Promise<void> {}

  /** The body a call would send (for batch jobs, which carry the same request). */
  body(messages: readonly ChatMessage[], request: GenerationParams, tool?: ToolSpec): Record<string, unknown> {
    return messagesBody(this.modelId, messages, { ...this.options.defaults, ...defined(request) }, { ...(tool ? { tool } : {}), promptCaching: this.options.promptCaching ?? true });
  }

  private async send(
    messages: readonly ChatMessage[],
    request: GenerationParams & { readonly signal?: AbortSignal },
    tool: ToolSpec | undefined,
    onText: ((text: string) => void) | undefined,
  ): Promise<GenerateResult> {
    const body = { ...this.body(messages, request, tool), ...(onText ? { stream: true } : {}) };
    if (this.options.batch && !onText) {
      const answer = await this.options.batch.request(body, request.signal);
      const parsed = MessageSchema.safeParse(answer);
      if (!parsed.success) throw new IterAlignError("HTTP_BAD_RESPONSE", `a batch answer from ${displayUrl(this.baseUrl)} is not a message`, { retryable: true });
      return { text: messageText(parsed.data, tool?.name), finishReason: finishReason(parsed.data.stop_reason), usage: anthropicUsage(parsed.data.usage) };
    }
    const call = new HttpCall({
      url: endpointUrl(this.baseUrl, "/messages"),
      headers: {
        "content-type": "application/json",
        accept: onText ? "text/event-stream" : "application/json",
        "anthropic-version": this.options.anthropicVersion ?? "2023-06-01",
        ...(this.options.apiKey ? { "x-api-key": this.options.apiKey } : {}),
      },
      timeoutMs: this.options.timeoutMs ?? 600_000,
      secrets: this.secrets,
      ...(request.signal ? { signal: request.signal } : {}),
      ...(this.options.rateLimits
        ? { onResponse: (response: Response) => this.options.rateLimits?.observe({ status: response.status, headers: response.headers, endpoint: this.baseUrl }) }
        : {}),
    });
    try {
      const response = await call.post(body);
      if (onText) return await readStream(call, response, onText);
      const message = await call.json(response, MessageSchema);
      return { text: messageText(message, tool?.name), finishReason: finishReason(message.stop_reason), usage: anthropicUsage(message.usage) };
    } catch (err) {
      if (err instanceof CallbackError) throw err.error;
      throw call.failure(err, "read");
    } finally {
      call.dispose();
    }
  }
}

const KNOWN_EVENTS = new Set(["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop", "ping", "error"]);

class CallbackError extends Error {
  constructor(readonly error: unknown) {
    super("onText threw");
  }
}

/** Reads a streamed answer: text deltas go to `onText`; usage comes from `message_start` and `message_delta`. */
async function readStream(call: HttpCall, response: Response, onText: (text: string) => void): Promise<GenerateResult> {
  if (!response.body) throw call.badResponse("has no body to stream", "");
  let text = "";
  let usage: AnthropicUsage = {};
  let stop: string | null | undefined;
  let ended = false;
  for await (const data of sseData(response.body)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      throw call.badResponse(`sent a stream event that is not JSON: ${call.excerpt(data)}`, data);
    }
    // Event types added to the API later are skipped, not taken for a broken stream.
    if (!KNOWN_EVENTS.has(String((parsed as { type?: unknown } | null)?.type))) continue;
    const event = call.check(StreamEventSchema, parsed, data);
    switch (event.type) {
      case "message_start":
        usage = { ...usage, ...event.message.usage };
        break;
      case "content_block_delta":
        if (event.delta.type === "text_delta") {
          const piece = (event.delta as { text: string }).text;
          text += piece;
          try {
            onText(piece);
          } catch (err) {
            throw new CallbackError(err);
          }
        }
        break;
      case "message_delta":
        stop = event.delta.stop_reason ?? stop;
        if (event.usage) usage = { ...usage, ...Object.fromEntries(Object.entries(event.usage).filter(([, v]) => v !== undefined && v !== null)) };
        break;
      case "message_stop":
        ended = true;
        break;
      case "error":
        throw call.statusErrorFromBody(event.error.type === "overloaded_error" ? 529 : event.error.type === "rate_limit_error" ? 429 : 500, data);
      default:
        break;
    }
  }
  if (!ended) throw call.badResponse("stream ended before the message was complete", text);
  return { text, finishReason: finishReason(stop), usage: anthropicUsage(usage) };
}

function defined(request: GenerationParams): GenerationParams {
  const out: Record<string, unknown> = {};
  for (const key of ["maxTokens", "temperature", "topP", "seed", "stop", "frequencyPenalty", "presencePenalty"] as const) {
    if (request[key] !== undefined) out[key] = request[key];
  }
  return out;
}

