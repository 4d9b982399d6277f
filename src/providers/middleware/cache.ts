import { z } from "zod";
import type { CallKind, CallLog, CallRecord } from "../../spec/call-log.js";
import { IterAlignError } from "../../spec/errors.js";
import {
  GenerationParamsSchema,
  type EmbedResult,
  type GenerateObjectRequest,
  type GenerateObjectResult,
  type GenerateRequest,
  type GenerateResult,
  type JsonSchema,
  type LanguageModel,
  type ScoreResult,
  type TokenUsage,
} from "../../spec/language-model.js";
import { CanonicalJsonError, canonicalJson, sha256Hex } from "../../util/canonical-json.js";
import { wrapModel } from "./wrap.js";

/** Options for {@link withCache}. */
export interface CacheOptions {
  /** Where results are looked up and every finished call is recorded. */
  readonly log: CallLog;
  /** Stored on each record so a run's calls can be listed and accounted. */
  readonly runId?: string;
  /** Role the model plays (target, judge, …), stored on each record. */
  readonly role?: string;
  /** Epoch milliseconds, for `createdAt` and latency; injectable for tests. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * Also answer sampled requests (temperature > 0 without a seed) from the cache. Off by default:
   * callers that sample several times want different answers, not the first one again.
   */
  readonly cacheNondeterministic?: boolean;
}

/** An embed result as the cache returns it: `cached` is an extra field the base type lacks. */
export type CachedEmbedResult = EmbedResult & { readonly cached?: boolean };

const UsageSchema = z.object({
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  cachedPromptTokens: z.number().int().nonnegative().optional(),
  cacheWritePromptTokens: z.number().int().nonnegative().optional(),
});
const StoredGenerateSchema = z.object({
  text: z.string(),
  // "abort" results are partial and never stored; one found in the log is treated as a miss.
  finishReason: z.enum(["stop", "length"]),
  usage: UsageSchema,
  costUsd: z.number().nonnegative().optional(),
});
const StoredObjectSchema = StoredGenerateSchema.extend({ object: z.unknown() });
const StoredScoreSchema = z.object({
  scores: z.array(z.object({ logprob: z.number(), tokenCount: z.number().int().nonnegative(), isGreedy: z.boolean() })),
  usage: UsageSchema,
  scoringPath: z.string().optional(),
  costUsd: z.number().nonnegative().optional(),
});
const StoredEmbedSchema = z.object({ embeddings: z.array(z.array(z.number())) });

/** Generation parameters hashed into the key; taken from the spec's schema so new ones are never missed. */
const PARAM_KEYS = GenerationParamsSchema.keyof().options.filter((key) => key !== "seed");
const NO_USAGE: TokenUsage = { promptTokens: 0, completionTokens: 0 };

/**
 * Content-addressed response cache over a {@link CallLog}.
 *
 * The key is the SHA-256 of the canonical JSON of what determines the answer: provider, modelId, kind,
 * generation params, messages (or context/continuations, or texts), seed and, for `generateObject`,
 * the JSON schema. Signals, callbacks and anything secret (API keys live in the provider, not the
 * request) are never part of it.
 *
 * - Hit: no inner call; returns the stored result with `cached: true` (embed results get the same
 *   extra field). `generate` passes the whole cached text to `onText` once; `generateObject`
 *   re-validates the stored object through the request's zod schema, and a stored object that no
 *   longer passes counts as a miss.
 * - Miss: calls the inner model, then records a {@link CallRecord} before returning. Errors and
 *   aborted (partial) results are never recorded.
 * - Sampled requests (temperature > 0 and no seed) are passed through and recorded for accounting but
 *   never looked up, unless `cacheNondeterministic` is set.
 * - A request that cannot be canonicalised (e.g. a zod schema with no JSON-schema form) passes through.
 */
export function withCache(model: LanguageModel, options: CacheOptions): LanguageModel {
  const clock = options.clock ?? Date.now;
  const plainBase = {
    provider: model.provider,
    modelId: model.modelId,
    ...(model.fingerprint === undefined ? {} : { fingerprint: model.fingerprint }),
  };
  // What the server says it serves (asked once, on the first cacheable call) joins the fingerprint.
  let identified: Promise<typeof plainBase> | undefined;
  const keyBase = (): Promise<typeof plainBase> => {
    if (!model.serverIdentity) return Promise.resolve(plainBase);
    identified ??= model
      .serverIdentity()
      .catch(() => undefined)
      .then((identity) =>
        identity === undefined ? plainBase : { ...plainBase, fingerprint: sha256Hex(canonicalJson({ fingerprint: plainBase.fingerprint ?? null, server: identity })) },
      );
    return identified;
  };

  /** The miss/hit logic every method shares; `content` undefined means "not cacheable". */
  async function cached<R extends object>(call: {
    kind: CallKind;
    content: Record<string, unknown> | undefined;
    lookup: boolean;
    signal: AbortSignal | undefined;
    decode: (stored: unknown) => R | undefined;
    invoke: () => Promise<R>;
    usage: (result: R) => TokenUsage;
    storable: (result: R) => boolean;
    /** Side effect for a hit served by this layer (not for a `cached: true` coming from below). */
    onHit?: (result: R) => void;
  }): Promise<R> {
    const base = await keyBase();
    const request = call.content && tryCanonical({ ...base, kind: call.kind, ...call.content });
    if (request === undefined) return call.invoke();
    const key = sha256Hex(request);
    if (call.lookup) {
      // An aborted caller expects no answer, cached or not; match what an engine would do.
      if (call.signal?.aborted) throw new IterAlignError("ABORTED", `${model.modelId}: ${call.kind} aborted`);
      const hit = decodeRecord(options.log.getCall(key), call.decode);
      if (hit !== undefined) {
        call.onHit?.(hit);
        return hit;
      }
    }
    const startedAt = clock();
    const result = await call.invoke();
    const latencyMs = Math.max(0, clock() - startedAt);
    if (!call.storable(result)) return result;
    const { cached: _cached, ...plain } = result as R & { cached?: boolean };
    // Results that do not serialise faithfully (a non-finite logprob) are returned but not stored.
    const response = tryCanonical(plain);
    if (response === undefined) return result;
    const usage = call.usage(result);
    const record: CallRecord = {
      key,
      ...base,
      kind: call.kind,
      request,
      response,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      cachedPromptTokens: usage.cachedPromptTokens ?? 0,
      costUsd: "costUsd" in result && typeof result.costUsd === "number" ? result.costUsd : 0,
      latencyMs,
      createdAt: new Date(clock()).toISOString(),
      runId: options.runId ?? null,
      role: options.role ?? null,
    };
    options.log.putCall(record);
    return result;
  }

  const lookupGeneration = (request: GenerateRequest | GenerateObjectRequest<unknown>): boolean =>
    options.cacheNondeterministic === true ||
    request.temperature === undefined ||
    request.temperature === 0 ||
    request.seed !== undefined;

  return wrapModel(model, {
    generate(request, next) {
      return cached<GenerateResult>({
        kind: "generate",
        content: generationContent(request),
        lookup: lookupGeneration(request),
        signal: request.signal,
        decode: (stored) => {
          const parsed = StoredGenerateSchema.safeParse(stored);
          return parsed.success ? { ...parsed.data, cached: true } : undefined;
        },
        invoke: () => next(request),
        usage: (r) => r.usage,
        storable: (r) => r.finishReason !== "abort",
        // Streaming callers (progress displays) still see the text, once, when it came from the cache.
        onHit: (r) => {
          if (r.text.length > 0) request.onText?.(r.text);
        },
      });
    },

    generateObject<T>(request: GenerateObjectRequest<T>, next: (r: GenerateObjectRequest<T>) => Promise<GenerateObjectResult<T>>) {
      const jsonSchema = tryJsonSchema(request);
      return cached<GenerateObjectResult<T>>({
        kind: "generateObject",
        content:
          jsonSchema === undefined
            ? undefined
            : { ...generationContent(request), schema: jsonSchema, schemaName: request.schemaName },
        lookup: lookupGeneration(request),
        signal: request.signal,
        decode: (stored) => {
          const parsed = StoredObjectSchema.safeParse(stored);
          if (!parsed.success) return undefined;
          // The key pins the JSON schema, but zod refinements are not part of it: re-check.
          const object = request.schema.safeParse(parsed.data.object);
          return object.success ? { ...parsed.data, object: object.data, cached: true } : undefined;
        },
        invoke: () => next(request),
        usage: (r) => r.usage,
        storable: (r) => r.finishReason !== "abort",
      });
    },

    scoreContinuations(request, next) {
      return cached<ScoreResult>({
        kind: "scoreContinuations",
        content: {
          context: request.context,
          continuations: [...request.continuations],
          ...(request.addBos === false ? { addBos: false } : {}),
          ...(request.chat ? { chat: { messages: request.chat.messages.map((m) => ({ role: m.role, content: m.content })), templateVars: request.chat.templateVars ?? {} } } : {}),
        },
        lookup: true,
        signal: request.signal,
        decode: (stored) => {
          const parsed = StoredScoreSchema.safeParse(stored);
          return parsed.success ? { ...parsed.data, cached: true } : undefined;
        },
        invoke: () => next(request),
        usage: (r) => r.usage,
        storable: () => true,
      });
    },

    embed(texts, embedOptions, next) {
      return cached<CachedEmbedResult>({
        kind: "embed",
        content: { texts: [...texts] },
        lookup: true,
        signal: embedOptions?.signal,
        decode: (stored) => {
          const parsed = StoredEmbedSchema.safeParse(stored);
          return parsed.success ? { ...parsed.data, cached: true } : undefined;
        },
        invoke: () => next(texts, embedOptions),
        usage: () => NO_USAGE,
        storable: () => true,
      });
    },
  });
}

/** The hashed part of a (generate or generateObject) request: params, messages and seed only. */
function generationContent(request: GenerateRequest | GenerateObjectRequest<unknown>): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const key of PARAM_KEYS) params[key] = request[key];
  return {
    params,
    // Rebuilt field by field so stray properties on message objects never reach the key.
    messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
    seed: request.seed,
    // A conversation to classify renders differently from one to answer: it keys apart.
    ...("classify" in request && request.classify ? { classify: { templateVars: request.classify.templateVars ?? {} } } : {}),
  };
}

/** The JSON schema the engine will be given (same derivation as the providers), or undefined if none. */
function tryJsonSchema(request: GenerateObjectRequest<unknown>): JsonSchema | undefined {
  if (request.jsonSchema) return request.jsonSchema;
  try {
    return z.toJSONSchema(request.schema, { io: "output" });
  } catch {
    return undefined;
  }
}

function tryCanonical(value: unknown): string | undefined {
  try {
    return canonicalJson(value);
  } catch (error) {
    if (error instanceof CanonicalJsonError) return undefined;
    throw error;
  }
}

/** Decodes a stored record's response; a missing, unparsable or stale record is a miss (undefined). */
function decodeRecord<R>(record: CallRecord | undefined, decode: (stored: unknown) => R | undefined): R | undefined {
  if (!record) return undefined;
  let stored: unknown;
  try {
    stored = JSON.parse(record.response);
  } catch {
    return undefined;
  }
  return decode(stored);
}
