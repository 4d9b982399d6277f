import type { CallKind } from "../../spec/call-log.js";
import type { ResolvedGuard } from "../../spec/guard.js";
import type {
  EmbedResult,
  GenerateObjectRequest,
  GenerateObjectResult,
  GenerateRequest,
  GenerateResult,
  LanguageModel,
  ScoreRequest,
  ScoreResult,
} from "../../spec/language-model.js";

/** Options object `embed` takes. */
export type EmbedOptions = { signal?: AbortSignal };

/**
 * Per-method overrides for {@link wrapModel}. Each gets the request and `next`, the inner model's
 * method; a method left out forwards unchanged.
 */
export interface MethodOverrides {
  generate?(request: GenerateRequest, next: (request: GenerateRequest) => Promise<GenerateResult>): Promise<GenerateResult>;
  generateObject?<T>(
    request: GenerateObjectRequest<T>,
    next: (request: GenerateObjectRequest<T>) => Promise<GenerateObjectResult<T>>,
  ): Promise<GenerateObjectResult<T>>;
  scoreContinuations?(request: ScoreRequest, next: (request: ScoreRequest) => Promise<ScoreResult>): Promise<ScoreResult>;
  embed?(
    texts: readonly string[],
    options: EmbedOptions | undefined,
    next: (texts: readonly string[], options: EmbedOptions | undefined) => Promise<EmbedResult>,
  ): Promise<EmbedResult>;
}

/**
 * The one place that builds a wrapper model: keeps `provider`, `modelId`, the very same
 * `capabilities` set and `close()` of `inner`, and defines `scoreContinuations`/`embed` only when
 * `inner` has them, so capability checks see exactly what the engine offers.
 */
export function wrapModel(inner: LanguageModel, overrides: MethodOverrides): LanguageModel {
  const generate = (request: GenerateRequest): Promise<GenerateResult> => inner.generate(request);
  const generateObject = <T>(request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> =>
    inner.generateObject(request);
  const wrapped: LanguageModel = {
    provider: inner.provider,
    modelId: inner.modelId,
    ...(inner.fingerprint === undefined ? {} : { fingerprint: inner.fingerprint }),
    ...(inner.guard === undefined ? {} : { guard: inner.guard }),
    ...(inner.serverIdentity ? { serverIdentity: inner.serverIdentity.bind(inner) } : {}),
    capabilities: inner.capabilities,
    generate: (request) => (overrides.generate ? overrides.generate(request, generate) : generate(request)),
    generateObject: <T>(request: GenerateObjectRequest<T>) =>
      overrides.generateObject ? overrides.generateObject(request, generateObject<T>) : generateObject(request),
    close: () => inner.close(),
  };
  if (inner.scoreContinuations) {
    const score = inner.scoreContinuations.bind(inner);
    Object.assign(wrapped, {
      scoreContinuations: (request: ScoreRequest): Promise<ScoreResult> =>
        overrides.scoreContinuations ? overrides.scoreContinuations(request, score) : score(request),
    });
  }
  if (inner.embed) {
    const embed = inner.embed.bind(inner);
    const next = (texts: readonly string[], options: EmbedOptions | undefined): Promise<EmbedResult> =>
      options === undefined ? embed(texts) : embed(texts, options);
    Object.assign(wrapped, {
      embed: (texts: readonly string[], options?: EmbedOptions): Promise<EmbedResult> =>
        overrides.embed ? overrides.embed(texts, options, next) : next(texts, options),
    });
  }
  return wrapped;
}

/** What any model method returns. */
export type CallResult = GenerateResult | GenerateObjectResult<unknown> | ScoreResult | EmbedResult;

/** One model call as a kind-agnostic interceptor sees it. */
export interface ModelCall<R extends CallResult> {
  /** The wrapped (inner) model. */
  readonly model: LanguageModel;
  readonly kind: CallKind;
  /** The caller's abort signal, if any. */
  readonly signal: AbortSignal | undefined;
  /** A rough count of the tokens the call may use (prompt characters / 4, plus maxTokens): for `tpm` pacing. */
  readonly estimatedTokens: number;
  /** Runs the call on the inner model; `signal` replaces the caller's one when given. */
  invoke(signal?: AbortSignal): Promise<R>;
}

/** Around-advice applied to every method of a model alike (retry, timeout, limits, accounting). */
export type CallInterceptor = <R extends CallResult>(call: ModelCall<R>) => Promise<R>;

/** Wraps every method of `inner` with the same `intercept`, via {@link wrapModel}. */
export function interceptCalls(inner: LanguageModel, intercept: CallInterceptor): LanguageModel {
  const call = <R extends CallResult>(
    kind: CallKind,
    signal: AbortSignal | undefined,
    estimatedTokens: number,
    run: (signal: AbortSignal | undefined) => Promise<R>,
  ): Promise<R> => intercept({ model: inner, kind, signal, estimatedTokens, invoke: (replacement) => run(replacement ?? signal) });
  const chars = (texts: readonly string[]): number => Math.ceil(texts.reduce((n, t) => n + t.length, 0) / 4);
  const generation = (request: GenerateRequest | GenerateObjectRequest<unknown>): number =>
    chars(request.messages.map((m) => m.content)) + (request.maxTokens ?? 256);
  return wrapModel(inner, {
    generate: (request, next) => call("generate", request.signal, generation(request), (signal) => next({ ...request, signal })),
    generateObject: (request, next) =>
      call("generateObject", request.signal, generation(request as GenerateObjectRequest<unknown>), (signal) => next({ ...request, signal })),
    scoreContinuations: (request, next) =>
      call("scoreContinuations", request.signal, chars([request.context, ...request.continuations]), (signal) => next({ ...request, signal })),
    embed: (texts, options, next) =>
      call("embed", options?.signal, chars(texts), (signal) => next(texts, signal === undefined ? options : { ...options, signal })),
  });
}

/** The model marked as a guard classifier (judges read its answers by `guard`), everything else unchanged. */
export function withGuard(model: LanguageModel, guard: ResolvedGuard): LanguageModel {
  return { ...wrapModel(model, {}), guard };
}
