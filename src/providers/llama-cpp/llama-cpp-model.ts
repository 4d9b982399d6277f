import { createHash } from "node:crypto";
import path from "node:path";
import { chooseChatWrapper, toChatHistory } from "./chat-render.js";
import {
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import type {
  Capability,
  ChatMessage,
  ClassifyRendering,
  ContinuationScore,
  GenerateObjectRequest,
  GenerateObjectResult,
  GenerateRequest,
  GenerateResult,
  GenerationParams,
  JsonSchema,
  LanguageModel,
  ScoreRequest,
  ScoreResult,
} from "../../spec/language-model.js";
import { acquireModel, errorText, fingerprintFile, getEngine, resolveModelPath, type DownloadTimeouts, type EngineOptions } from "./engine.js";
import { checkGgufFile } from "../../gguf/gguf-check.js";
import { generateObjectWith, requestJsonSchema } from "../structured-output.js";
import { toGrammarSchema } from "./json-schema-grammar.js";
import { NativeScoring, type ScoringMode } from "./native-scorer.js";
import { scoreTokenByToken, scoreWithSharedContext, tokenizeAfter, tokenizeForScoring, type ScoringTokens } from "./scoring.js";
import { Template } from "@huggingface/jinja";
import { decodeOnSequence, firstStop } from "./decode-loop.js";
import { GroupScheduler, type NativeGenerationStats, type PromptEvaluationStats } from "./group-scheduler.js";
import { nativeGeneration, type GenerationMode, type NativeGenerator } from "./native-generator.js";
import type { NativePath } from "./native-path.js";
import { orderedFairShare } from "./lockstep-barrier.js";
import { SequencePool } from "./sequence-pool.js";

/** Settings of an embedded llama.cpp model. */
export interface LlamaCppModelOptions extends EngineOptions {
  /** A GGUF path (relative to `baseDir`) or an `hf:` URI that node-llama-cpp downloads once. */
  readonly model: string;
  /**
   * GGUF LoRA adapters (paths relative to `baseDir`) applied on top of `model` at scale 1, in generation and in
   * scoring alike: a base model plus the adapter a trainer made. Part of the model's fingerprint.
   */
  readonly adapters?: readonly string[];
  readonly baseDir?: string;
  /** Context window of each sequence, in tokens. */
  readonly contextSize?: number;
  /** Parallel sequences decoded together in one context. */
  readonly sequences?: number;
  /** Tokens per decode batch (shared by all sequences). */
  readonly batchSize?: number;
  /**
   * Flash attention (off by default): faster on GPUs, but its f16 accumulation makes scores depend on how
   * tokens were batched (differences around 1e-4 in a continuation's log-likelihood, measured here).
   */
  readonly flashAttention?: boolean;
  /** Threads for this context's evaluation. */
  readonly threads?: number;
  /**
   * `auto`: node-llama-cpp's wrapper for the template the GGUF declares (it checks the wrapper renders the
   * same text as the model's Jinja template); `jinja`: always render the GGUF's own Jinja template.
   */
  readonly chatTemplate?: "auto" | "jinja";
  /**
   * How `scoreContinuations` computes log-likelihoods. `native`: the `iteralign-scorer` program (built by
   * `npm run build:llama -- iteralign-scorer`) reads only the needed tokens' log-softmax, 10-15x faster with a
   * 152k vocabulary; it runs as a child process with its own copy of the model (and KV cache). `engine`:
   * node-llama-cpp's probability maps, in process. `auto` (default): native when the scorer binary is built,
   * else engine. Both paths score the same tokens; their log-likelihoods differ by ~1e-5 (F32) to ~7e-5 (Q8_0).
   */
  readonly scoring?: ScoringMode;
  /**
   * How plain generation (no JSON schema, no streaming) is decoded. `native`: the `iteralign-generate` program
   * (built by `npm run build:llama -- iteralign-generate`) decodes each decode group as llama-batched-bench does,
   * one batch per step and sampling next to the logits, as a child process with its own context (the weights are
   * memory-mapped from the same file). `engine`: node-llama-cpp, in process. `auto` (default): native when the
   * program is built, else engine. Greedy answers are the same tokens on both paths up to float differences between
   * batchings; temperature sampling takes the same parameters (top-k 40 and top-p 0.95 unless set) but draws from its
   * own random stream. Requests with a JSON schema or a streaming callback always take the engine path.
   */
  readonly generation?: GenerationMode;
  /**
   * Shared-prefix reuse: a decode group's common prompt prefix (instructions, a constitution) is evaluated once
   * and its KV state given to every sequence of the group. At least `minTokens` long to be shared; `false`: never.
   */
  readonly prefixReuse?: false | { readonly minTokens: number };
  /** Defaults for every call; a request's own values win. */
  readonly defaults?: GenerationParams;
  readonly onDownloadProgress?: (done: number, total: number) => void;
  /** Watchdog of `hf:`/URL downloads. */
  readonly downloadTimeouts?: DownloadTimeouts;
}

const DEFAULT_MAX_TOKENS = 256;
/** Shortest group prefix shared by default (shorter ones cost about what the state transfer costs). */
export const DEFAULT_PREFIX_REUSE_MIN_TOKENS = 64;

/** The embedded provider: llama.cpp in-process through node-llama-cpp. */
export class LlamaCppModel implements LanguageModel {
  readonly provider = "llama-cpp";
  readonly capabilities: ReadonlySet<Capability> = new Set<Capability>([
    "generate",
    "generateObject",
    "scoreContinuations",
    "stream",
    "classify",
    "scoreChat",
  ]);
  private conversationTemplate: Template | undefined;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly scheduler: GroupScheduler;
  private nativeScoring: NativeScoring | undefined;
  private nativeGenerator: NativePath<NativeGenerator> | undefined;
  private closed = false;

  private constructor(
    readonly modelId: string,
    readonly fingerprint: string,
    readonly file: string,
    /** Absolute paths of the LoRA adapters applied to the model. */
    readonly adapters: readonly string[],
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly pool: SequencePool,
    private readonly chatWrapper: ChatWrapper,
    private readonly options: LlamaCppModelOptions,
    private readonly releaseModel: () => Promise<void>,
    /** The engine's thread budget (node-llama-cpp's `Llama`, adjusted by the thread governor). */
    private readonly threadBudget: { readonly maxThreads: number },
  ) {
    const reuse = options.prefixReuse ?? { minTokens: DEFAULT_PREFIX_REUSE_MIN_TOKENS };
    this.scheduler = new GroupScheduler(pool, context.totalSequences, reuse === false ? undefined : reuse, {
      generator: async () => (this.generationPath === "native" ? this.generator().get() : undefined),
      // The context's fixed threads when set, else the engine's current budget (the governor's choice under load).
      threads: () => this.options.threads ?? this.threadBudget.maxThreads,
    });
  }

  /** Resolves (downloading an `hf:` URI if needed), loads and prepares a model. */
  static async load(options: LlamaCppModelOptions): Promise<LlamaCppModel> {
    const file = await resolveModelPath(options.model, {
      ...(options.baseDir ? { baseDir: options.baseDir } : {}),
      ...(options.onDownloadProgress ? { onProgress: options.onDownloadProgress } : {}),
      ...(options.downloadTimeouts ? { timeouts: options.downloadTimeouts } : {}),
    });
    // A bad file (empty, not a GGUF, cut short) fails here with what is wrong, not with the engine's message.
    checkGgufFile(file);
    const adapters = (options.adapters ?? []).map((a) => path.resolve(options.baseDir ?? ".", a));
    for (const adapter of adapters) checkGgufFile(adapter);
    const { model, release } = await acquireModel(file, options);
    try {
      const sequences = options.sequences ?? 4;
      const context = await model.createContext({
        ...(adapters.length > 0 ? { lora: { adapters: adapters.map((filePath) => ({ filePath, scale: 1 })) } } : {}),
        sequences,
        batching: { itemPrioritizationStrategy: orderedFairShare },
        contextSize: options.contextSize ?? Math.min(4096, model.trainContextSize),
        ...(options.batchSize ? { batchSize: options.batchSize } : {}),
        ...(options.threads ? { threads: options.threads } : {}),
        // Flash attention accumulates in f16 on CPU: log-likelihoods then drift ~1e-4 between batchings.
        flashAttention: options.flashAttention ?? false,
      });
      const wrapper = chooseChatWrapper(model, options.chatTemplate ?? "auto", file);
      return new LlamaCppModel(
        // Records name what answered: the base model and, when adapters are applied, each adapter.
        [options.model, ...adapters.map((a) => `lora:${a}`)].join(" + "),
        await modelFingerprint(file, adapters),
        file,
        adapters,
        model,
        context,
        new SequencePool(context, sequences),
        wrapper,
        options,
        release,
        await getEngine(options),
      );
    } catch (err) {
      await release();
      if (err instanceof IterAlignError) throw err;
      throw new IterAlignError("MODEL_LOAD_FAILED", `cannot create a context for ${file}: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  /** Parallel sequences of this model's context. */
  get parallelSequences(): number {
    return this.context.totalSequences;
  }

  /** Time the native generator spent decoding and sampling (zero on the engine path). */
  get nativeGeneration(): Readonly<NativeGenerationStats> {
    return this.scheduler.nativeStats;
  }

  /** The path plain generation takes (see the `generation` option); the first read looks for the generator. */
  get generationPath(): "native" | "engine" {
    return this.generator().path;
  }

  private generator(): NativePath<NativeGenerator> {
    // The generator is built for the CPU: with the engine on a GPU, `auto` keeps generation there.
    const wanted = this.options.generation ?? "auto";
    const mode = wanted === "auto" && this.options.gpu ? "engine" : wanted;
    this.nativeGenerator ??= nativeGeneration(mode, {
      modelFile: this.file,
      ...(this.adapters.length > 0 ? { adapters: this.adapters } : {}),
      contextSize: this.context.contextSize,
      threads: this.options.threads ?? this.threadBudget.maxThreads,
      sequences: this.context.totalSequences,
      ...(this.options.batchSize ? { batchSize: this.options.batchSize } : {}),
    });
    return this.nativeGenerator;
  }

  /** Prompt tokens sent and evaluated so far (shared prefixes count once per decode group). */
  get promptEvaluation(): Readonly<PromptEvaluationStats> {
    return this.scheduler.stats;
  }

  /** The chat template in use (a node-llama-cpp wrapper name). */
  get chatTemplateName(): string {
    return this.chatWrapper.wrapperName;
  }

  /** Renders chat messages to prompt tokens with the model's own chat template. */
  renderChat(messages: readonly ChatMessage[]): { tokens: Token[]; stopTokens: Set<Token>; stopTexts: string[] } {
    const history = toChatHistory(messages);
    const state = this.chatWrapper.generateContextState({ chatHistory: history });
    const tokens = state.contextText.tokenize(this.model.tokenizer);
    const stopTokens = new Set<Token>();
    const stopTexts: string[] = [];
    for (const trigger of state.stopGenerationTriggers) {
      const triggerTokens = trigger.tokenize(this.model.tokenizer, "trimLeadingSpace");
      const first = triggerTokens[0];
      if (triggerTokens.length === 1 && first !== undefined && this.model.isSpecialToken(first)) stopTokens.add(first);
      else {
        const text = trigger.toString();
        if (text.length > 0) stopTexts.push(text);
      }
    }
    return { tokens, stopTokens, stopTexts };
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.assertOpen();
    return this.run(request, undefined);
  }

  /**
   * Decodes under a grammar made from the JSON schema (the engine's native constraint), then the core's
   * structured-output path validates with the zod schema and, since a grammar cannot enforce everything
   * (numeric bounds, patterns), repairs once under the same grammar.
   */
  async generateObject<T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> {
    this.assertOpen();
    const grammar = await this.grammarFor(requestJsonSchema(request));
    return generateObjectWith(
      {
        label: `${this.modelId} (maxTokens ${String(request.maxTokens ?? this.options.defaults?.maxTokens ?? DEFAULT_MAX_TOKENS)}, context ${this.context.contextSize})`,
        enforcesSchema: true,
        decode: (messages) => this.run({ ...request, messages }, grammar),
      },
      request,
    );
  }

  /**
   * Renders a conversation to classify with the GGUF's own Jinja template (`tokenizer.chat_template`), as
   * llama-server and Hugging Face's `apply_chat_template` do: the messages as they are (a final assistant message
   * included), a generation prompt, the model's BOS/EOS texts and `templateVars`; special tokens in the text are
   * parsed as such, and the BOS token is added when the model's tokenizer adds one and the template did not.
   */
  renderConversation(messages: readonly ChatMessage[], rendering: ClassifyRendering = {}): { text: string; tokens: Token[] } {
    if (!this.conversationTemplate) {
      const source = this.model.fileInfo.metadata?.tokenizer?.chat_template;
      if (typeof source !== "string") {
        throw new IterAlignError("USAGE", `${this.file} has no tokenizer.chat_template: a guard model classifies with its own chat template`);
      }
      try {
        this.conversationTemplate = new Template(source);
      } catch (error) {
        throw new IterAlignError("MODEL_LOAD_FAILED", `${this.file}: its chat template does not parse: ${errorText(error)}`, { cause: error });
      }
    }
    let text: string;
    try {
      text = this.conversationTemplate.render({
        ...rendering.templateVars,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: true,
        bos_token: this.model.tokens.bosString ?? "",
        eos_token: this.model.tokens.eosString ?? "",
      });
    } catch (error) {
      throw new IterAlignError("GENERATION_FAILED", `${this.modelId}: its chat template failed on the conversation: ${errorText(error)}`, { cause: error });
    }
    const tokens = this.model.tokenize(text, true);
    const bos = this.model.tokens.bos;
    if (this.model.tokens.shouldPrependBosToken && bos !== null && tokens[0] !== bos) tokens.unshift(bos);
    return { text, tokens };
  }

  /** A scoring request's tokens: its raw-text context, or (`chat`) the rendered conversation followed by it. */
  private scoringTokens(request: Omit<ScoreRequest, "signal">): ScoringTokens {
    return request.chat
      ? tokenizeAfter(this.model, this.renderConversation(request.chat.messages, request.chat).tokens, request)
      : tokenizeForScoring(this.model, request);
  }

  async scoreContinuations(request: ScoreRequest): Promise<ScoreResult> {
    this.assertOpen();
    const tokens = this.scoringTokens(request);
    if (this.scoringPath === "native") {
      if (request.signal?.aborted) throw new IterAlignError("ABORTED", "scoring aborted");
      const native = await this.native().score(tokens, request.signal);
      // undefined: auto mode and the scorer could not start; the engine path takes over for good.
      if (native) return { scores: native.scores, usage: { promptTokens: native.promptTokens, completionTokens: 0 }, scoringPath: "native" };
    }
    // node-llama-cpp 3.21.1 can hand one sequence another's logits when several sequences evaluate at once, so
    // engine scoring runs alone on the context, between generation groups (the same queue orders both).
    const result = await this.scheduler.exclusive(() => this.pool.with((seq) => scoreWithSharedContext(seq, tokens, request.signal), request.signal));
    return { ...result, scoringPath: "engine" };
  }

  /** The path `scoreContinuations` uses (see the `scoring` option); the first read looks for the scorer. */
  get scoringPath(): "native" | "engine" {
    return this.native().path;
  }

  private native(): NativeScoring {
    this.nativeScoring ??= new NativeScoring(this.options.scoring ?? "auto", {
      modelFile: this.file,
      ...(this.adapters.length > 0 ? { adapters: this.adapters } : {}),
      contextSize: this.context.contextSize,
      threads: this.options.threads ?? this.options.maxThreads ?? 0,
      sequences: this.context.totalSequences,
      ...(this.options.batchSize ? { batchSize: this.options.batchSize } : {}),
    });
    return this.nativeScoring;
  }

  /**
   * Reference scorer: evaluates context + continuation one token at a time, with no KV reuse. Slow; it exists
   * to check `scoreContinuations` (and faster scoring paths) against an independent computation.
   */
  async scoreContinuationsTokenByToken(request: Omit<ScoreRequest, "signal">): Promise<ContinuationScore[]> {
    this.assertOpen();
    const tokens = this.scoringTokens(request);
    return this.scheduler.exclusive(() => this.pool.with((seq) => scoreTokenByToken(seq, tokens)));
  }

  /** Detokenizes with special tokens shown (for inspecting rendered prompts). */
  detokenize(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens, true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.nativeScoring?.close();
    await this.nativeGenerator?.close();
    await this.context.dispose();
    await this.releaseModel();
  }

  private assertOpen(): void {
    if (this.closed) throw new IterAlignError("USAGE", `model ${this.modelId} is closed`);
  }

  private grammarFor(jsonSchema: JsonSchema): Promise<LlamaGrammar> {
    const key = JSON.stringify(jsonSchema);
    let grammar = this.grammars.get(key);
    if (!grammar) {
      grammar = getEngine(this.options).then((llama) => llama.createGrammarForJsonSchema(toGrammarSchema(jsonSchema) as Parameters<Llama["createGrammarForJsonSchema"]>[0]));
      grammar.catch(() => this.grammars.delete(key));
      this.grammars.set(key, grammar);
    }
    return grammar;
  }

  private async run(request: GenerateRequest, grammar: LlamaGrammar | undefined): Promise<GenerateResult> {
    const params = { ...this.options.defaults, ...definedOnly(request) };
    const { tokens, stopTokens, stopTexts } = request.classify
      ? { tokens: this.renderConversation(request.messages, request.classify).tokens, stopTokens: new Set<Token>(), stopTexts: [] as string[] }
      : this.renderChat(request.messages);
    const maxTokens = params.maxTokens ?? DEFAULT_MAX_TOKENS;
    const room = this.context.contextSize - tokens.length;
    if (room <= 0) {
      throw new IterAlignError(
        "GENERATION_FAILED",
        `${this.modelId}: the prompt has ${tokens.length} tokens, more than the context size ${this.context.contextSize}`,
      );
    }
    if (request.signal?.aborted) throw new IterAlignError("ABORTED", `${this.modelId}: generation aborted`);
    const allStops = [...stopTexts, ...(params.stop ?? [])];
    const temperature = params.temperature ?? 0;
    // Plain generation may run on the native generator (the scheduler decides; see the `generation` option).
    const native =
      grammar === undefined && request.onText === undefined
        ? {
            sampling: {
              maxTokens: Math.min(maxTokens, room),
              temperature,
              // node-llama-cpp's defaults when sampling: top-k 40, top-p 0.95.
              ...(temperature > 0 ? { topK: 40, topP: params.topP ?? 0.95, ...(params.seed !== undefined ? { seed: params.seed } : {}) } : {}),
              ...(params.frequencyPenalty ? { frequencyPenalty: params.frequencyPenalty } : {}),
              ...(params.presencePenalty ? { presencePenalty: params.presencePenalty } : {}),
              stopTokens: [...stopTokens],
              stopTexts: allStops,
            },
            finish: (answer: { readonly tokens: number[]; readonly finish: "stop" | "length" }, cached: number): GenerateResult => {
              let text = this.model.detokenize(answer.tokens as Token[]);
              let finishReason: GenerateResult["finishReason"] = answer.finish;
              const stopAt = firstStop(text, allStops);
              if (stopAt >= 0) {
                text = text.slice(0, stopAt);
                finishReason = "stop";
              }
              return {
                text,
                finishReason,
                usage: { promptTokens: tokens.length, completionTokens: answer.tokens.length, ...(cached > 0 ? { cachedPromptTokens: cached } : {}) },
              };
            },
          }
        : undefined;
    return this.scheduler.submit(tokens, (seq, { barrier, member, prefilled }) =>
      decodeOnSequence(
        this.model,
        seq,
        {
          tokens,
          stopTokens,
          stopTexts: allStops,
          maxTokens: Math.min(maxTokens, room),
          params,
          grammar,
          onText: request.onText,
          signal: request.signal,
          lockstep: { barrier, member },
          prefilled,
          // The first member evaluated the shared prefix; the others read it from its state.
          cachedPromptTokens: member === 0 ? 0 : prefilled,
        },
        this.modelId,
      ),
      native,
    );
  }
}

function definedOnly(request: GenerationParams): GenerationParams {
  const out: Record<string, unknown> = {};
  for (const key of ["maxTokens", "temperature", "topP", "seed", "stop", "frequencyPenalty", "presencePenalty"] as const) {
    if (request[key] !== undefined) out[key] = request[key];
  }
  return out;
}




/** The fingerprint of a model file, or of a model file with LoRA adapters (each adapter's fingerprint, in order). */
async function modelFingerprint(file: string, adapters: readonly string[]): Promise<string> {
  const base = await fingerprintFile(file);
  if (adapters.length === 0) return base;
  const hash = createHash("sha256").update(`model ${base}\n`);
  for (const adapter of adapters) hash.update(`lora ${await fingerprintFile(adapter)}\n`);
  return hash.digest("hex");
}
