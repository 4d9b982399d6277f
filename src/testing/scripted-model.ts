import type { ResolvedGuard } from "../spec/guard.js";
import { IterAlignError, OutputInvalidError } from "../spec/errors.js";
import type {
  Capability,
  EmbedResult,
  GenerateObjectRequest,
  GenerateObjectResult,
  GenerateRequest,
  GenerateResult,
  LanguageModel,
  ScoreRequest,
  ScoreResult,
} from "../spec/language-model.js";

/**
 * One scripted answer: a result to return, an Error to throw, or a function computing either from the
 * request and the 0-based call index of that method.
 */
export type Step<Req, Res> = Res | Error | ((request: Req, index: number) => Res | Promise<Res>);

/** What `embed` receives, as one request object for scripting. */
export interface EmbedCall {
  readonly texts: readonly string[];
  readonly signal?: AbortSignal;
}

/** Every kind of call the double answers. */
export type ScriptedKind = "generate" | "generateObject" | "scoreContinuations" | "embed";

/** Options for {@link ScriptedModel}. A method's script runs in order and its last step repeats. */
export interface ScriptedModelOptions {
  readonly provider?: string;
  readonly modelId?: string;
  readonly generate?: readonly Step<GenerateRequest, GenerateResult>[];
  /** Answers as text: the double parses the JSON and validates it through the request's schema, like an engine. */
  readonly generateObject?: readonly Step<GenerateObjectRequest<unknown>, GenerateResult>[];
  /** Given: the model has `scoreContinuations` and the capability; left out: neither. */
  readonly scoreContinuations?: readonly Step<ScoreRequest, ScoreResult>[];
  /** Given: the model has `embed` and the capability; left out: neither. */
  readonly embed?: readonly Step<EmbedCall, EmbedResult>[];
  /** Capabilities added to those the scripts give (e.g. `classify`, `scoreChat` for a guard double). */
  readonly extraCapabilities?: readonly Capability[];
  /** The guard settings the double carries, as a config entry's `guard` would give a model. */
  readonly guard?: ResolvedGuard;
}

/** A recorded call: which method, and the request as the double received it. */
export type ScriptedCall =
  | { readonly kind: "generate"; readonly request: GenerateRequest }
  | { readonly kind: "generateObject"; readonly request: GenerateObjectRequest<unknown> }
  | { readonly kind: "scoreContinuations"; readonly request: ScoreRequest }
  | { readonly kind: "embed"; readonly request: EmbedCall };

/** A generate result with the given text and a small fixed usage. */
export function textResult(text: string, usage = { promptTokens: 5, completionTokens: 3 }): GenerateResult {
  return { text, finishReason: "stop", usage };
}

/** A step that never answers on its own: it rejects with ABORTED once the request's signal aborts. */
export function untilAborted<Req extends { readonly signal?: AbortSignal }, Res>(): Step<Req, Res> {
  return (request) =>
    new Promise<Res>((_, reject) => {
      const signal = request.signal;
      if (!signal) return; // never settles: the test must bound it some other way
      const fail = (): void => reject(new IterAlignError("ABORTED", "scripted call aborted", { cause: signal.reason }));
      if (signal.aborted) fail();
      else signal.addEventListener("abort", fail, { once: true });
    });
}

/** A promise with its resolve/reject exposed, for tests that control when a step finishes. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: Error): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A LanguageModel double that answers from scripts and counts calls per method. Methods left
 * unscripted (generate/generateObject) throw; optional ones (scoreContinuations/embed) are absent.
 */
export class ScriptedModel implements LanguageModel {
  readonly provider: string;
  readonly modelId: string;
  readonly capabilities: ReadonlySet<Capability>;
  readonly guard?: ResolvedGuard;
  readonly scoreContinuations?: (request: ScoreRequest) => Promise<ScoreResult>;
  readonly embed?: (texts: readonly string[], options?: { signal?: AbortSignal }) => Promise<EmbedResult>;

  /** Calls per method, counted when the call starts. */
  readonly calls: Record<ScriptedKind, number> = { generate: 0, generateObject: 0, scoreContinuations: 0, embed: 0 };
  /** Every call in arrival order. */
  readonly log: ScriptedCall[] = [];
  /** Calls started and not yet settled, and the most seen at once. */
  inFlight = 0;
  maxInFlight = 0;
  closeCount = 0;

  constructor(private readonly options: ScriptedModelOptions = {}) {
    this.provider = options.provider ?? "scripted";
    this.modelId = options.modelId ?? "scripted-model";
    const capabilities: Capability[] = ["generate", "generateObject", "stream"];
    const score = options.scoreContinuations;
    if (score) {
      capabilities.push("scoreContinuations");
      this.scoreContinuations = (request) => {
        this.log.push({ kind: "scoreContinuations", request });
        return this.answer(score, "scoreContinuations", request);
      };
    }
    const embed = options.embed;
    if (embed) {
      capabilities.push("embed");
      this.embed = (texts, embedOptions) => {
        const request: EmbedCall = { texts, signal: embedOptions?.signal };
        this.log.push({ kind: "embed", request });
        return this.answer(embed, "embed", request);
      };
    }
    capabilities.push(...(options.extraCapabilities ?? []));
    this.capabilities = new Set(capabilities);
    if (options.guard) this.guard = options.guard;
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.log.push({ kind: "generate", request });
    const result = await this.answer(this.options.generate ?? [], "generate", request);
    request.onText?.(result.text);
    return result;
  }

  async generateObject<T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> {
    // The scripts are typed against `unknown`; the schema check below is what makes the object a T.
    const untyped = request as GenerateObjectRequest<unknown>;
    this.log.push({ kind: "generateObject", request: untyped });
    const result = await this.answer(this.options.generateObject ?? [], "generateObject", untyped);
    let json: unknown;
    try {
      json = JSON.parse(result.text);
    } catch (error) {
      throw new OutputInvalidError("scripted output is not JSON", result.text, { cause: error });
    }
    const parsed = request.schema.safeParse(json);
    if (!parsed.success) throw new OutputInvalidError("scripted output does not match the schema", result.text);
    return { ...result, object: parsed.data };
  }

  async close(): Promise<void> {
    this.closeCount++;
  }

  private async answer<Req, Res>(script: readonly Step<Req, Res>[], kind: ScriptedKind, request: Req): Promise<Res> {
    // Like an engine, a call whose caller already gave up is not answered.
    const signal = (request as { signal?: AbortSignal }).signal;
    if (signal?.aborted) throw new IterAlignError("ABORTED", `scripted ${kind} aborted`, { cause: signal.reason });
    const index = this.calls[kind]++;
    const step = script[Math.min(index, script.length - 1)];
    if (step === undefined) throw new Error(`ScriptedModel: no script for ${kind}`);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (step instanceof Error) throw step;
      if (typeof step === "function") return await (step as (request: Req, index: number) => Res | Promise<Res>)(request, index);
      return step;
    } finally {
      this.inFlight--;
    }
  }
}
