import { createHash } from "node:crypto";
import path from "node:path";
import type { BatchJobLog, CallLog } from "../spec/call-log.js";
import { IterAlignError } from "../spec/errors.js";
import { ROLES, type ChatMessage, type LanguageModel, type Role } from "../spec/language-model.js";
import { withGuard, wrapModel } from "./middleware/wrap.js";
import { resolveGuard } from "../stages/guard-judge.js";
import { providerOf, type ModelConfig } from "./builtin.js";
import { createMeter, type Meter } from "./middleware/accounting.js";
import { applyMiddleware } from "./middleware/compose.js";
import { createLimiter, type Limiter } from "./middleware/concurrency.js";
import { AdaptiveLimiter } from "./middleware/rate-limit.js";
import { loadPriceFile, priceFor, type PriceTable } from "./pricing.js";
import type { ModelRef, RateLimitObserver } from "./provider.js";

export interface CreateModelOptions {
  /** Directory relative model paths are resolved against (the config file's). */
  readonly baseDir: string;
  /** Where API keys are read from (`apiKeyEnv`). Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Engine-wide thread cap. */
  readonly maxThreads?: number;
  /** Receives download progress of `hf:` models. */
  readonly onDownloadProgress?: (name: string, done: number, total: number) => void;
  /** Receives the endpoint's rate-limit headers (HTTP providers). */
  readonly rateLimits?: RateLimitObserver;
  /** Where batch jobs are recorded (the run store). */
  readonly batchLog?: BatchJobLog;
  /** The store's folder (batch files go under it). */
  readonly dataDir?: string;
  /** Told about long waits (batch jobs). */
  readonly notify?: (message: string) => void;
}

/** Creates the provider's model for one config entry, without middleware. */
export function createProviderModel(name: string, config: ModelConfig, options: CreateModelOptions): Promise<LanguageModel> {
  return providerOf(config).create(name, config, {
    baseDir: options.baseDir,
    env: options.env ?? process.env,
    ...(options.maxThreads !== undefined ? { maxThreads: options.maxThreads } : {}),
    ...(options.onDownloadProgress ? { onDownloadProgress: (done: number, total: number) => options.onDownloadProgress?.(name, done, total) } : {}),
    ...(options.rateLimits ? { rateLimits: options.rateLimits } : {}),
    ...(options.batchLog ? { batchLog: options.batchLog } : {}),
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    ...(options.notify ? { notify: options.notify } : {}),
  });
}

/**
 * The part of a config the model layer reads: the model entries, the roles bound to them, and the settings of the
 * cache, the engine and the prices. (A whole `ModelsConfig` is one.)
 */
export interface ModelsConfig {
  readonly models: Readonly<Record<string, ModelConfig>>;
  readonly roles: Readonly<Partial<Record<Role, string>>> & { readonly target: string; readonly oracle: string };
  readonly cache: { readonly enabled: boolean };
  readonly engine: { readonly maxThreads?: number | undefined };
  readonly pricing?: { readonly file?: string | undefined } | undefined;
}

/** Names the model each role uses; `judge` falls back to the oracle. */
export function modelNameForRole(config: ModelsConfig, role: Role): string | undefined {
  if (role === "judge") return config.roles.judge ?? config.roles.oracle;
  return config.roles[role];
}

export interface ModelSetOptions extends CreateModelOptions {
  readonly config: ModelsConfig;
  /** Response cache and accounting store; without it calls are neither cached nor recorded. */
  readonly callLog?: CallLog;
  readonly runId?: string;
  readonly meter?: Meter;
}

/** The limit of one endpoint: the adaptive one for HTTP APIs (it is also their rate-limit observer). */
type EndpointLimit = { readonly limiter: Limiter; readonly observer?: RateLimitObserver };

/**
 * The models of a config, bound to roles. Each config entry is created once (roles naming the same entry
 * share it, and the engine shares a GGUF loaded by several entries), wrapped in accounting, cache, the
 * endpoint's limit, retry, timeout and pricing. Limits are shared per endpoint, as each provider defines it.
 */
export class ModelSet {
  readonly meter: Meter;
  private readonly raw = new Map<string, Promise<LanguageModel>>();
  private readonly wrapped = new Map<string, LanguageModel>();
  private readonly limits = new Map<string, EndpointLimit>();
  /** Entries made at run time (a role rebound to trained weights), by name. */
  private readonly extraEntries = new Map<string, ModelConfig>();
  private readonly roleOverrides = new Map<Role, string>();
  /** System prompts of entries made for trained models (the in-context trainer's constitution). */
  private readonly systemPrompts = new Map<string, string>();
  private priceTable: PriceTable | undefined;

  constructor(private readonly options: ModelSetOptions) {
    this.meter = options.meter ?? createMeter();
  }

  /** Names of the config's models. */
  get modelNames(): string[] {
    return Object.keys(this.options.config.models);
  }

  /** The model playing `role`, loading it on first use. */
  async forRole(role: Role): Promise<LanguageModel> {
    const name = this.roleOverrides.get(role) ?? modelNameForRole(this.options.config, role);
    if (!name) throw new IterAlignError("CONFIG_INVALID", `roles.${role}: no model is bound to the ${role} role`);
    return this.byName(name, role);
  }

  /** The config entry of a name (including entries made for trained models). */
  entry(name: string): ModelConfig | undefined {
    return this.options.config.models[name] ?? this.extraEntries.get(name);
  }

  /** The model of a config entry; `role` is recorded with its calls. */
  async byName(name: string, role?: string): Promise<LanguageModel> {
    const config = this.entry(name);
    if (!config) throw new IterAlignError("CONFIG_INVALID", `unknown model '${name}' (defined: ${this.modelNames.join(", ")})`);
    const key = `${name}\u0000${role ?? ""}`;
    const existing = this.wrapped.get(key);
    if (existing) return existing;
    const limit = this.limitFor(name, config);
    let raw = this.raw.get(name);
    if (!raw) {
      const maxThreads = this.options.maxThreads ?? this.options.config.engine.maxThreads;
      raw = createProviderModel(name, config, {
        ...this.options,
        ...(maxThreads !== undefined ? { maxThreads } : {}),
        ...(limit?.observer ? { rateLimits: limit.observer } : {}),
      });
      raw.catch(() => this.raw.delete(name));
      this.raw.set(name, raw);
    }
    const price = priceFor(config.model, { own: config.pricing, table: this.prices() });
    // A batched call waits for its job (up to a day) and a failed one is an error row retried on resume: neither a
    // per-call timeout nor per-call retries (which would make a job per retried call) apply, and no concurrency
    // limit (a stage's calls must reach the batch together, to make one job).
    const batched = "batch" in config && config.batch !== undefined;
    const systemPrompt = this.systemPrompts.get(name);
    const wrapped = applyMiddleware(await raw, {
      ...(batched
        ? {}
        : {
            timeout: { timeoutMs: config.timeoutMs },
            retry: { maxRetries: config.retries, maxRetryAfterMs: config.timeoutMs },
            ...(limit ? { concurrency: limit.limiter, limitEachAttempt: limit.observer !== undefined } : {}),
          }),
      meter: this.meter,
      ...(price ? { pricing: { price: price.price, batch: batched } } : {}),
      ...(this.options.callLog && this.options.config.cache.enabled
        ? {
            cache: {
              log: this.options.callLog,
              ...(this.options.runId ? { runId: this.options.runId } : {}),
              ...(role ? { role } : {}),
            },
          }
        : {}),
    });
    // Outermost, so the cache key and the call log see the request the model answers (system prompt included).
    const guarded = config.guard ? withGuard(wrapped, resolveGuard(config.guard, this.options.baseDir, `models.${name}`)) : wrapped;
    const model = systemPrompt === undefined ? guarded : withSystemPrompt(guarded, systemPrompt);
    this.wrapped.set(key, model);
    return model;
  }

  /** The price table of the config's pricing file, read once. */
  private prices(): PriceTable | undefined {
    const file = this.options.config.pricing?.file;
    if (file === undefined) return undefined;
    this.priceTable ??= loadPriceFile(path.resolve(this.options.baseDir, file));
    return this.priceTable;
  }

  /**
   * The entry's endpoint limit, shared by every entry with the same endpoint: adaptive (AIMD between
   * `concurrencyFloor` and `concurrency`, paced by rate-limit headers, `rpm`, `tpm`) for HTTP providers, a plain
   * FIFO limit otherwise, none for an embedded engine without a configured `concurrency`.
   */
  private limitFor(name: string, config: ModelConfig): EndpointLimit | undefined {
    const definition = providerOf(config);
    const endpoint = definition.endpoint(name, config);
    if (endpoint === undefined) return undefined;
    let limit = this.limits.get(endpoint);
    if (!limit) {
      const ceiling = config.concurrency ?? definition.defaultConcurrency;
      if (definition.adaptive) {
        const adaptive = new AdaptiveLimiter({
          ceiling,
          ...(config.concurrencyFloor !== undefined ? { floor: config.concurrencyFloor } : {}),
          ...(config.rpm !== undefined ? { rpm: config.rpm } : {}),
          ...(config.tpm !== undefined ? { tpm: config.tpm } : {}),
        });
        limit = { limiter: adaptive, observer: adaptive };
      } else {
        limit = { limiter: createLimiter(ceiling) };
      }
      this.limits.set(endpoint, limit);
    }
    return limit;
  }

  /**
   * Binds `role` to the config entry of that role serving the trained model `ref` (a GGUF path, a fine-tuned model
   * id, a server's adapter name); other roles naming the same entry keep the original. The role's provider decides
   * whether it can serve `ref`. The role's previous override is freed.
   */
  async rebindRole(role: Role, ref: ModelRef): Promise<void> {
    const base = modelNameForRole(this.options.config, role);
    const entry = base === undefined ? undefined : this.options.config.models[base];
    if (!base || !entry) throw new IterAlignError("CONFIG_INVALID", `roles.${role}: no model is bound to the ${role} role`);
    const previous = this.roleOverrides.get(role);
    const name = `${base}@${createHash("sha256").update(JSON.stringify([ref.model, ref.revision ?? null, ref.systemPrompt ?? null, ref.adapters ?? []])).digest("hex").slice(0, 12)}`;
    if (previous === name) return;
    const { systemPrompt, ...weights } = ref;
    this.extraEntries.set(name, providerOf(entry).withTrainedModel(entry, weights));
    if (systemPrompt !== undefined) this.systemPrompts.set(name, systemPrompt);
    this.roleOverrides.set(role, name);
    if (previous) await this.closeEntry(previous);
  }

  private async closeEntry(name: string): Promise<void> {
    const raw = this.raw.get(name);
    this.raw.delete(name);
    for (const key of [...this.wrapped.keys()]) if (key.startsWith(`${name}\u0000`)) this.wrapped.delete(key);
    this.extraEntries.delete(name);
    this.systemPrompts.delete(name);
    if (raw) await (await raw).close();
  }

  /** Frees every loaded model. */
  async close(): Promise<void> {
    const models = await Promise.allSettled([...this.raw.values()]);
    this.raw.clear();
    this.wrapped.clear();
    for (const m of models) if (m.status === "fulfilled") await m.value.close();
  }
}

/**
 * Checks, before a run is created or any model loaded, what each role's provider can check without loading or
 * calling its model (a local GGUF exists and is whole). Bad model files are user input and fail here (exit code
 * 2) instead of after the run has started.
 */
export async function preflightModels(config: ModelsConfig, baseDir: string): Promise<void> {
  const names = new Set<string>();
  for (const role of ROLES) {
    const name = modelNameForRole(config, role);
    if (name !== undefined) names.add(name);
  }
  for (const name of names) {
    const entry = config.models[name];
    if (!entry) continue;
    try {
      await providerOf(entry).preflight?.(name, entry, baseDir);
    } catch (err) {
      if (err instanceof IterAlignError) {
        throw new IterAlignError(err.code, `models.${name}.model: ${err.message}`, { cause: err, details: { ...err.details, model: name } });
      }
      throw err;
    }
  }
}

/** The model a role's entry names, as a trainer sees it. */
export async function modelRefOf(config: ModelsConfig, role: Role, baseDir: string): Promise<ModelRef> {
  const name = modelNameForRole(config, role);
  const entry = name === undefined ? undefined : config.models[name];
  if (!entry) throw new IterAlignError("CONFIG_INVALID", `roles.${role}: no model is bound to the ${role} role`);
  return providerOf(entry).modelRef(entry, baseDir);
}

/**
 * Every call gets `system` as its system message (replacing any other): how a model "trained" in context (the
 * constitution as a system prompt) is served. Below the cache, so the key holds the prompt as sent.
 */
export function withSystemPrompt(model: LanguageModel, system: string): LanguageModel {
  const add = <R extends { readonly messages: readonly ChatMessage[] }>(request: R): R => ({
    ...request,
    messages: [{ role: "system" as const, content: system }, ...request.messages.filter((m) => m.role !== "system")],
  });
  return wrapModel(model, {
    generate: (request, next) => next(add(request)),
    generateObject: (request, next) => next(add(request)),
  });
}
