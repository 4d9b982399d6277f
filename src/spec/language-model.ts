import { z } from "zod";
import { IterAlignError } from "./errors.js";
import type { ResolvedGuard } from "./guard.js";

/** One chat message. */
export const ChatMessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

/** Sampling and length settings shared by every generation call. */
export const GenerationParamsSchema = z.object({
  maxTokens: z.number().int().positive().optional(),
  /** 0 means greedy decoding. */
  temperature: z.number().min(0).optional(),
  topP: z.number().gt(0).max(1).optional(),
  seed: z.number().int().nonnegative().optional(),
  stop: z.array(z.string().min(1)).optional(),
  frequencyPenalty: z.number().optional(),
  presencePenalty: z.number().optional(),
});
export type GenerationParams = z.infer<typeof GenerationParamsSchema>;

/**
 * A conversation to classify (guard models): the model's own chat template renders the messages with a
 * generation prompt, and a final assistant message is part of the conversation judged, not an answer to go on
 * with. `templateVars` are extra variables the template reads (e.g. a policy or guideline text).
 */
export interface ClassifyRendering {
  readonly templateVars?: Readonly<Record<string, string>>;
}

export interface GenerateRequest extends GenerationParams {
  readonly messages: readonly ChatMessage[];
  /** Render the messages as a conversation to classify (capability `classify`). */
  readonly classify?: ClassifyRendering;
  /** Called with each piece of text as it is decoded (streaming). */
  readonly onText?: (text: string) => void;
  readonly signal?: AbortSignal;
}

/** Why generation ended. */
export type FinishReason = "stop" | "length" | "abort";

export interface TokenUsage {
  /** Every prompt token the call sent, those read from a provider's prompt cache included. */
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens read from the provider's prompt cache (billed at its cached-input price). */
  readonly cachedPromptTokens?: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic bills them at a premium). */
  readonly cacheWritePromptTokens?: number;
}

export interface GenerateResult {
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly usage: TokenUsage;
  /** Dollars the call cost at the model's price (absent for models without one, e.g. local GGUFs). */
  readonly costUsd?: number;
  /** True when the result came from the response cache and no engine work was done. */
  readonly cached?: boolean;
}

/** A JSON schema (draft 2020-12 subset) given as a plain object. */
export type JsonSchema = Readonly<Record<string, unknown>>;

export interface GenerateObjectRequest<T> extends Omit<GenerateRequest, "onText"> {
  /** zod schema that validates (and types) the result. */
  readonly schema: z.ZodType<T>;
  /** JSON schema sent to the engine; derived from `schema` when omitted. */
  readonly jsonSchema?: JsonSchema;
  /** Name for the schema (used by HTTP APIs that require one). */
  readonly schemaName?: string;
}

export interface GenerateObjectResult<T> extends GenerateResult {
  readonly object: T;
}

export interface ScoreRequest {
  /**
   * Raw text prompt (not chat-templated): benchmarks control their own format. With `chat`, the text that
   * follows the rendered conversation (an answer's fixed beginning; may be empty).
   */
  readonly context: string;
  /**
   * Capability `scoreChat`: the context begins with this conversation rendered by the model's own chat template
   * for classification (see {@link ClassifyRendering}), special tokens included.
   */
  readonly chat?: ClassifyRendering & { readonly messages: readonly ChatMessage[] };
  readonly continuations: readonly string[];
  /**
   * false: no BOS token before the context, even where the model's tokenizer adds one (lm-evaluation-harness's
   * default for most models). Left out: the model's own convention.
   */
  readonly addBos?: boolean;
  readonly signal?: AbortSignal;
}

export interface ContinuationScore {
  /** Sum of the natural-log probabilities of the continuation's tokens given the context. */
  readonly logprob: number;
  /** Number of tokens the continuation was scored over. */
  readonly tokenCount: number;
  /** True when every continuation token was the argmax (greedy) token. */
  readonly isGreedy: boolean;
}

export interface ScoreResult {
  readonly scores: readonly ContinuationScore[];
  readonly usage: TokenUsage;
  /** Dollars the call cost at the model's price. */
  readonly costUsd?: number;
  /**
   * How the log-likelihoods were computed, for the record: `native` (the iteralign-scorer program), `engine`
   * (node-llama-cpp in process), `echo` (a server's prompt log-probabilities).
   */
  readonly scoringPath?: string;
  readonly cached?: boolean;
}

export interface EmbedResult {
  readonly embeddings: readonly (readonly number[])[];
}

/** What a model can do; benchmarks and stages declare which they need. */
export type Capability = "generate" | "generateObject" | "scoreContinuations" | "embed" | "stream" | "classify" | "scoreChat";

/**
 * The one model interface every stage uses. Providers implement it; middleware wraps it.
 * `scoreContinuations` and `embed` exist only when listed in `capabilities`.
 */
export interface LanguageModel {
  /** Provider id, e.g. `llama-cpp` or `openai-compatible`. */
  readonly provider: string;
  /** Model id within the provider (a file path, an hf: URI, an API model name). */
  readonly modelId: string;
  /**
   * Identifies the exact weights behind `modelId` (for a local file: a hash of its size and sampled bytes).
   * The response cache keys on it, so replacing a file at the same path (e.g. a fine-tuned model) never
   * returns the old model's answers. Absent for remote APIs, where `modelId` is the identity.
   */
  readonly fingerprint?: string;
  /**
   * What the server reports about the weights behind `modelId` (vLLM: the path or repository it loaded, and an
   * adapter's base; llama-server: the model's size and parameter count), asked once; undefined where the server
   * reports nothing. The response cache keys on it besides `fingerprint`, so a checkpoint re-served under an old
   * name is not answered from the cache.
   */
  serverIdentity?(signal?: AbortSignal): Promise<string | undefined>;
  readonly capabilities: ReadonlySet<Capability>;
  /** Set when the model's config entry declares it a guard classifier: judges read its answers by this. */
  readonly guard?: ResolvedGuard;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  generateObject<T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>>;
  scoreContinuations?(request: ScoreRequest): Promise<ScoreResult>;
  embed?(texts: readonly string[], options?: { signal?: AbortSignal }): Promise<EmbedResult>;
  /** Frees engine resources. Idempotent. */
  close(): Promise<void>;
}

/** Roles a config binds models to. */
export const ROLES = ["target", "oracle", "judge", "embedder"] as const;
export type Role = (typeof ROLES)[number];

/** Throws CAPABILITY_MISSING naming the model and what is needed. */
export function requireCapability(model: LanguageModel, capability: Capability, neededBy: string): void {
  if (!model.capabilities.has(capability)) {
    throw new CapabilityMissingError(model, capability, neededBy);
  }
}


export class CapabilityMissingError extends IterAlignError {
  constructor(model: LanguageModel, capability: Capability, neededBy: string) {
    super(
      "CAPABILITY_MISSING",
      `${neededBy} needs '${capability}', which ${model.provider} model '${model.modelId}' does not offer (it offers: ${[
        ...model.capabilities,
      ].join(", ")})`,
      { details: { capability, provider: model.provider, modelId: model.modelId } },
    );
    this.name = "CapabilityMissingError";
  }
}
