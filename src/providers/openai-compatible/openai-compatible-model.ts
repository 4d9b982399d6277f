import { IterAlignError } from "../../spec/errors.js";
import {
  CapabilityMissingError,
  type Capability,
  type ChatMessage,
  type ContinuationScore,
  type EmbedResult,
  type FinishReason,
  type GenerateObjectRequest,
  type GenerateObjectResult,
  type GenerateRequest,
  type GenerateResult,
  type GenerationParams,
  type LanguageModel,
  type ScoreRequest,
  type ScoreResult,
  type TokenUsage,
} from "../../spec/language-model.js";
import { endpointUrl } from "../../util/url.js";
import { echoPrompt, scoreEcho } from "./echo-scoring.js";
import { HttpCall, displayUrl, errorMessageOf, linkAbort } from "../http/http-call.js";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  CompletionLogprobsSchema,
  CompletionSchema,
  EmbeddingsSchema,
  type Usage,
} from "./schemas.js";
import { sseData } from "../http/sse.js";
import { responseFormat, schemaName, type StructuredOutputMode } from "./structured.js";
import { addUsage, generateObjectWith } from "../structured-output.js";
import { EndpointPool, type ReplicaOutcome } from "../http/endpoint-pool.js";
import type { BatchCollector } from "../http/batch.js";
import type { RateLimitObserver } from "../provider.js";
import { canonicalJson, sha256Hex } from "../../util/canonical-json.js";

/** Settings of a model served over an OpenAI-compatible HTTP API (vLLM, llama-server, Ollama, OpenAI...). */
export interface OpenAICompatibleModelOptions {
  /**
   * API root including the version segment, e.g. `http://127.0.0.1:8080/v1`; or the roots of several replicas
   * of the same model (see {@link EndpointPool}).
   */
  readonly baseUrl: string | readonly string[];
  /** Identifies the weights behind `model` (a checkpoint hash or tag); part of {@link fingerprint}. */
  readonly revision?: string;
  /** Receives every response's status and headers (the adaptive rate limit of the endpoint). */
  readonly rateLimits?: RateLimitObserver;
  /** Sends non-streaming chat calls as batch jobs instead of one request each. */
  readonly batch?: BatchCollector;
  /** Model name sent in every request. */
  readonly model: string;
  /** Sent as `Authorization: Bearer <apiKey>`; never included in errors. */
  readonly apiKey?: string;
  /** Extra request headers. Values of auth-like headers are treated as secrets too. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Deadline of one HTTP call, including reading a streamed body. Default 300000 (5 minutes). */
  readonly timeoutMs?: number;
  /**
   * How `generateObject` asks for JSON: `json_schema` (server-enforced schema, default), `json_object`
   * (JSON mode; schema stated in the system message) or `none` (schema stated in the system message only).
   */
  readonly structuredOutput?: StructuredOutputMode;
  /**
   * `echo`: `scoreContinuations` through `/completions` with `echo` + `logprobs` (vLLM supports it;
   * llama-server does not). `none` (default): the capability is not offered.
   */
  readonly scoring?: "echo" | "none";
  /** Offer `embed` through `POST /embeddings` (llama-server needs `--embeddings`). Default false. */
  readonly embeddings?: boolean;
  /** Defaults for every call; a request's own values win. */
  readonly defaults?: GenerationParams;
  /** Offer {@link OpenAICompatibleModel.serverIdentity} (`GET /models`). Default true. */
  readonly serverIdentity?: boolean;
}

/** Same defaults as the llama-cpp provider, so a config behaves alike on either. */
const DEFAULT_MAX_TOKENS = 256;
const DEFAULT_TIMEOUT_MS = 300_000;
/** Header names whose values are credentials and so must never be quoted. */
const SECRET_HEADER = /auth|key|token|secret|cookie|password/i;

/** The HTTP provider: any server that speaks the OpenAI chat completions API. */
export class OpenAICompatibleModel implements LanguageModel {
  readonly provider = "openai-compatible";
  readonly modelId: string;
  /**
   * The server side's identity: the base URLs and the revision. The response cache keys on it, so the same model
   * name on another server, or a re-served checkpoint with a new revision, is never answered from the cache.
   */
  readonly fingerprint: string;
  readonly capabilities: ReadonlySet<Capability>;
  /** The replicas (one for a single base URL). */
  readonly pool: EndpointPool;
  private readonly baseUrls: readonly string[];
  private readonly secrets: readonly string[];
  private identity: Promise<string | undefined> | undefined;

  constructor(private readonly options: OpenAICompatibleModelOptions) {
    const urls = typeof options.baseUrl === "string" ? [options.baseUrl] : [...options.baseUrl];
    if (urls.length === 0) throw new IterAlignError("USAGE", "openai-compatible baseUrl: give at least one URL");
    for (const raw of urls) {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new IterAlignError("USAGE", `openai-compatible baseUrl is not a URL: ${displayUrl(raw)}`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new IterAlignError("USAGE", `openai-compatible baseUrl must be http(s), got ${url.protocol}`);
      }
      if (url.username !== "" || url.password !== "") {
        throw new IterAlignError("USAGE", `openai-compatible baseUrl ${displayUrl(raw)} must not contain a user name or password; pass the key as apiKey`);
      }
    }
    this.baseUrls = urls.map((u) => u.replace(/\/+$/, ""));
    this.pool = new EndpointPool(this.baseUrls);
    this.fingerprint = sha256Hex(canonicalJson({ baseUrls: [...this.baseUrls].map(displayUrl).sort(), revision: options.revision ?? null }));
    this.modelId = options.model;
    // A server renders a conversation to classify with its own chat template (vLLM, llama-server, SGLang).
    const capabilities: Capability[] = ["generate", "generateObject", "stream", "classify"];
    if (options.scoring === "echo") {
      capabilities.push("scoreContinuations");
      this.scoreContinuations = (request) => this.scoreViaEcho(request);
    }
    if (options.embeddings === true) {
      capabilities.push("embed");
      this.embed = (texts, embedOptions) => this.embedTexts(texts, embedOptions);
    }
    this.capabilities = new Set(capabilities);
    this.secrets = [
      ...(options.apiKey ? [options.apiKey] : []),
      ...Object.entries(options.headers ?? {})
        .filter(([name]) => SECRET_HEADER.test(name))
        .map(([, value]) => value)
        .filter((value) => value.length > 0),
    ];
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    // A conversation to classify is sent as it is (the server's template adds the generation prompt); its
    // template variables go as `chat_template_kwargs`, which vLLM and SGLang pass to the template.
    const vars = request.classify?.templateVars;
    const extra = vars && Object.keys(vars).length > 0 ? { chat_template_kwargs: vars } : undefined;
    return this.chat(request.messages, request, undefined, request.onText, extra);
  }

  async generateObject<T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> {
    const mode = this.options.structuredOutput ?? "json_schema";
    const name = schemaName(request.schemaName);
    return generateObjectWith(
      {
        label: `${this.modelId} at ${this.baseUrls.map(displayUrl).join(", ")}`,
        enforcesSchema: mode === "json_schema",
        decode: (messages, jsonSchema) => this.chat(messages, request, responseFormat(mode, name, jsonSchema), undefined),
      },
      request,
    );
  }

  /** Log-likelihoods through `/completions` with echo + logprobs; present only with `scoring: "echo"`. */
  readonly scoreContinuations?: (request: ScoreRequest) => Promise<ScoreResult>;
  /** Embeddings through `/embeddings`; present only with `embeddings: true`. */
  readonly embed?: (texts: readonly string[], options?: { signal?: AbortSignal }) => Promise<EmbedResult>;

  private async scoreViaEcho(request: ScoreRequest): Promise<ScoreResult> {
    if (this.options.scoring !== "echo") {
      throw new CapabilityMissingError(this, "scoreContinuations", "scoreContinuations (set scoring: \"echo\")");
    }
    if (request.chat) throw new CapabilityMissingError(this, "scoreChat", "scoring the answer to a chat-rendered conversation (guard probability)");
    if (request.addBos === false) {
      // Servers decide the BOS token themselves (llama-server always adds the model's; vLLM's own setting), and
      // one that ignored a request for none would score silently under the other convention.
      throw new IterAlignError(
        "USAGE",
        `${this.provider} model '${this.modelId}': scoring without a BOS token (eval bos: none) is not supported through a server's echo; use the llama-cpp provider for lm-evaluation-harness's convention`,
      );
    }
    if (request.continuations.length === 0) return { scores: [], usage: { promptTokens: 0, completionTokens: 0 } };
    const empty = request.continuations.findIndex((c) => c === "" && !/\s$/.test(request.context));
    if (empty >= 0) throw new IterAlignError("USAGE", `continuation ${String(empty)} is empty`);
    // Score continuations in parallel (servers batch them); the first failure cancels the rest.
    const group = new AbortController();
    const unlink = linkAbort(request.signal, group);
    let results: { score: ContinuationScore; usage: TokenUsage }[];
    try {
      results = await Promise.all(
        request.continuations.map((continuation) =>
          this.scoreOne(request.context, continuation, group.signal).catch((err: unknown) => {
            group.abort();
            throw err;
          }),
        ),
      );
    } finally {
      unlink();
    }
    return {
      scoringPath: "echo",
      scores: results.map((r) => r.score),
      usage: results.reduce((sum, r) => addUsage(sum, r.usage), { promptTokens: 0, completionTokens: 0 }),
    };
  }

  private async embedTexts(texts: readonly string[], options: { signal?: AbortSignal } = {}): Promise<EmbedResult> {
    if (this.options.embeddings !== true) {
      throw new CapabilityMissingError(this, "embed", "embed (set embeddings: true)");
    }
    if (texts.length === 0) return { embeddings: [] };
    const body = { model: this.modelId, input: texts, encoding_format: "float" };
    return this.post("/embeddings", body, options.signal, false, async (call, res) => {
      const { data } = await call.json(res, EmbeddingsSchema);
      const byIndex = new Map(data.map((d) => [d.index, d.embedding]));
      const embeddings: number[][] = [];
      for (let i = 0; i < texts.length; i++) {
        const e = byIndex.get(i);
        if (!e) throw call.badResponse(`has no embedding for input ${String(i)} of ${String(texts.length)}`, "");
        embeddings.push(e);
      }
      return { embeddings };
    });
  }

  /** Stops the replicas' health probes; every call opens and finishes its own HTTP exchange. */
  /**
   * What each replica's `GET /models` says about `modelId`: vLLM's `root` (the path or repository loaded; an
   * adapter's folder) and `parent` (an adapter's base), llama-server's `meta` (size, parameters). `created` is left
   * out (vLLM sets it to the time of the listing). Undefined when no replica lists the model with any of these.
   * Asked once per model object, each replica within 10 s; a failure counts as "reports nothing".
   */
  serverIdentity(): Promise<string | undefined> {
    if (this.options.serverIdentity === false) return Promise.resolve(undefined);
    this.identity ??= this.askIdentity();
    return this.identity;
  }

  private async askIdentity(): Promise<string | undefined> {
    const headers: Record<string, string> = { ...this.options.headers, accept: "application/json", ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) };
    const reports: Array<{ url: string; root?: unknown; parent?: unknown; meta?: unknown }> = [];
    for (const url of this.baseUrls) {
      try {
        const response = await fetch(endpointUrl(url, "/models"), { headers, signal: AbortSignal.timeout(10_000) });
        if (!response.ok) continue;
        const body = (await response.json()) as { data?: Array<Record<string, unknown>> };
        const entry = Array.isArray(body.data) ? body.data.find((m) => m["id"] === this.modelId) : undefined;
        if (!entry) continue;
        const fields = { ...(entry["root"] !== undefined ? { root: entry["root"] } : {}), ...(entry["parent"] !== undefined ? { parent: entry["parent"] } : {}), ...(entry["meta"] !== undefined ? { meta: entry["meta"] } : {}) };
        if (Object.keys(fields).length > 0) reports.push({ url: displayUrl(url), ...fields });
      } catch {
        continue;
      }
    }
    return reports.length === 0 ? undefined : canonicalJson(reports.sort((a, b) => a.url.localeCompare(b.url)));
  }

  async close(): Promise<void> {
    this.pool.close();
    this.identity = undefined;
  }

  private async scoreOne(
    context: string,
    continuation: string,
    signal: AbortSignal,
  ): Promise<{ score: ContinuationScore; usage: TokenUsage }> {
    const at = echoPrompt(context, continuation);
    const body = { model: this.modelId, prompt: at.prompt, echo: true, max_tokens: 1, logprobs: 1, temperature: 0 };
    const endpoint = displayUrl(endpointUrl(this.baseUrls[0] as string, "/completions"));
    try {
      return await this.post("/completions", body, signal, false, async (call, res) => {
        const completion = await call.json(res, CompletionSchema);
        const raw = completion.choices[0]?.logprobs;
        const logprobs = CompletionLogprobsSchema.safeParse(raw);
        if (!logprobs.success) {
          throw this.echoUnsupported(endpoint, "the response has no echoed prompt logprobs (tokens, token_logprobs, text_offset)");
        }
        const scored = scoreEcho(logprobs.data, at);
        if (scored.score === undefined) {
          if (scored.problem === "not-echoed") {
            throw this.echoUnsupported(endpoint, "the response's logprobs do not start with the prompt's tokens");
          }
          throw call.badResponse("has inconsistent logprobs arrays", JSON.stringify(raw));
        }
        return { score: scored.score, usage: toUsage(completion.usage) };
      });
    } catch (err) {
      // Servers that refuse `echo` say so in an error body ("Only no echo is supported", "echo is not supported").
      if (err instanceof IterAlignError && err.code === "HTTP_STATUS" && /\becho\b/i.test(String(err.details.bodyExcerpt))) {
        throw this.echoUnsupported(endpoint, `the server refused it: ${err.message}`);
      }
      throw err;
    }
  }

  private echoUnsupported(endpoint: string, reason: string): IterAlignError {
    return new IterAlignError(
      "CAPABILITY_MISSING",
      `${endpoint} does not support echo+logprobs, which scoreContinuations with scoring: "echo" needs: ${reason}. ` +
        `vLLM supports echo with logprobs on /completions; llama-server does not (use the llama-cpp provider to score, or scoring: "none").`,
      { details: { capability: "scoreContinuations", provider: this.provider, modelId: this.modelId, url: endpoint, reason } },
    );
  }

  /** One chat completion; streams when `onText` is given. */
  private async chat(
    messages: readonly ChatMessage[],
    request: GenerationParams & { readonly signal?: AbortSignal },
    format: Record<string, unknown> | undefined,
    onText: ((text: string) => void) | undefined,
    extra?: Record<string, unknown>,
  ): Promise<GenerateResult> {
    const p = { ...this.options.defaults, ...definedParams(request) };
    const body: Record<string, unknown> = {
      model: this.modelId,
      messages,
      max_tokens: p.maxTokens ?? DEFAULT_MAX_TOKENS,
      // Greedy unless asked otherwise, like the llama-cpp provider (the OpenAI default of 1 would make runs unrepeatable).
      temperature: p.temperature ?? 0,
      ...(p.topP !== undefined ? { top_p: p.topP } : {}),
      ...(p.seed !== undefined ? { seed: p.seed } : {}),
      ...(p.stop !== undefined && p.stop.length > 0 ? { stop: p.stop } : {}),
      ...(p.frequencyPenalty !== undefined ? { frequency_penalty: p.frequencyPenalty } : {}),
      ...(p.presencePenalty !== undefined ? { presence_penalty: p.presencePenalty } : {}),
      ...(format ? { response_format: format } : {}),
      ...(onText ? { stream: true, stream_options: { include_usage: true } } : {}),
      ...extra,
    };
    if (this.options.batch && !onText) {
      const answer = await this.options.batch.request(body, request.signal);
      const parsed = ChatCompletionSchema.safeParse(answer);
      if (!parsed.success) throw new IterAlignError("HTTP_BAD_RESPONSE", `a batch answer from ${this.baseUrls.map(displayUrl).join(", ")} is not a chat completion`, { retryable: true });
      const choice = parsed.data.choices[0];
      return { text: choice?.message.content ?? "", finishReason: finishReasonOf(choice?.finish_reason), usage: toUsage(parsed.data.usage) };
    }
    return this.post("/chat/completions", body, request.signal, onText !== undefined, async (call, res) => {
      if (onText) return readStream(call, res, onText);
      const completion = await call.json(res, ChatCompletionSchema);
      const choice = completion.choices[0];
      return {
        text: choice?.message.content ?? "",
        finishReason: finishReasonOf(choice?.finish_reason),
        usage: toUsage(completion.usage),
      };
    });
  }

  /**
   * POSTs JSON to `{baseUrl}{path}` on a replica of the pool and hands the 2xx response to `read` within the same
   * deadline. The replica is told how the exchange ended (a connection failure, timeout or 5xx takes it out of
   * the pool for a while), and the rate-limit observer sees every response's status and headers.
   */
  private async post<T>(
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    stream: boolean,
    read: (call: HttpCall, response: Response) => Promise<T>,
  ): Promise<T> {
    const headers: Record<string, string> = {
      ...this.options.headers,
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
      ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
    };
    const replica = this.pool.acquire();
    const call = new HttpCall({
      url: endpointUrl(replica.url, path),
      headers,
      timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      secrets: this.secrets,
      ...(signal ? { signal } : {}),
      ...(this.options.rateLimits
        ? { onResponse: (response: Response) => this.options.rateLimits?.observe({ status: response.status, headers: response.headers, endpoint: replica.url }) }
        : {}),
    });
    let outcome: ReplicaOutcome = "ok";
    try {
      const response = await call.post(body);
      return await read(call, response);
    } catch (err) {
      if (err instanceof CallbackError) throw err.error;
      const failure = call.failure(err, "read");
      outcome = replicaOutcome(failure, signal);
      throw failure;
    } finally {
      replica.release(outcome);
      call.dispose();
    }
  }
}

/** Whether a failed exchange says the replica is unwell (unreachable, timing out, failing with 5xx). */
function replicaOutcome(error: IterAlignError, signal: AbortSignal | undefined): ReplicaOutcome {
  if (signal?.aborted) return "ok";
  if (error.code === "HTTP_UNREACHABLE" || error.code === "TIMEOUT") return "down";
  const status = error.details.status;
  return error.code === "HTTP_STATUS" && typeof status === "number" && status >= 500 && status !== 529 ? "down" : "ok";
}

/** Carries an exception thrown by the caller's `onText` so it is rethrown as is, not taken for a network failure. */
class CallbackError extends Error {
  constructor(readonly error: unknown) {
    super("onText threw");
  }
}

/** Reads a streamed chat completion, passing each text piece to `onText` as it arrives. */
async function readStream(call: HttpCall, response: Response, onText: (text: string) => void): Promise<GenerateResult> {
  if (!response.body) throw call.badResponse("has no body to stream", "");
  let text = "";
  let finish: string | null | undefined;
  let usage: Usage | null | undefined;
  let done = false;
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") {
      done = true;
      break;
    }
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      throw call.badResponse(`sent a stream event that is not JSON: ${call.excerpt(data)}`, data);
    }
    // Servers report failures after the 200 status as an `error` event (llama-server does).
    if (errorMessageOf(data) !== undefined) {
      const code = (event as { error?: { code?: unknown } }).error?.code;
      throw call.statusErrorFromBody(typeof code === "number" && code >= 400 ? code : 500, data);
    }
    const chunk = call.check(ChatCompletionChunkSchema, event, data);
    for (const choice of chunk.choices.slice(0, 1)) {
      const piece = choice.delta?.content;
      if (piece) {
        text += piece;
        try {
          onText(piece);
        } catch (err) {
          throw new CallbackError(err);
        }
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  if (!done && !finish) throw call.badResponse("stream ended before the completion finished", text);
  return { text, finishReason: finishReasonOf(finish), usage: toUsage(usage) };
}

function finishReasonOf(reason: string | null | undefined): FinishReason {
  return reason === "length" ? "length" : "stop";
}

function toUsage(usage: Usage | null | undefined): TokenUsage {
  const cached = usage?.prompt_tokens_details?.cached_tokens ?? 0;
  return {
    promptTokens: usage?.prompt_tokens ?? 0,
    completionTokens: usage?.completion_tokens ?? 0,
    ...(cached > 0 ? { cachedPromptTokens: cached } : {}),
  };
}


function definedParams(request: GenerationParams): GenerationParams {
  const out: Record<string, unknown> = {};
  for (const key of ["maxTokens", "temperature", "topP", "seed", "stop", "frequencyPenalty", "presencePenalty"] as const) {
    if (request[key] !== undefined) out[key] = request[key];
  }
  return out;
}
