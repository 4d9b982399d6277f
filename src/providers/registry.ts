import { createHash } from "node:crypto";
import type { IterAlignConfig, ModelConfig } from "../config/config-schema.js";
import type { CallLog } from "../spec/call-log.js";
import { IterAlignError } from "../spec/errors.js";
import { ROLES, type GenerationParams, type LanguageModel, type Role } from "../spec/language-model.js";
import { checkGgufFile } from "../gguf/gguf-check.js";
import { isRemoteModelRef, resolveModelPath } from "./llama-cpp/engine.js";
import { LlamaCppModel } from "./llama-cpp/llama-cpp-model.js";
import { createMeter, type Meter } from "./middleware/accounting.js";
import { applyMiddleware } from "./middleware/compose.js";
import { createLimiter, type Limiter } from "./middleware/concurrency.js";
import { OpenAICompatibleModel } from "./openai-compatible/openai-compatible-model.js";

/** Default in-flight calls per HTTP endpoint. */
const HTTP_CONCURRENCY = 8;

export interface CreateModelOptions {
  /** Directory relative model paths are resolved against (the config file's). */
  readonly baseDir: string;
  /** Where API keys are read from (`apiKeyEnv`). Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Engine-wide thread cap. */
  readonly maxThreads?: number;
  /** Receives download progress of `hf:` models. */
  readonly onDownloadProgress?: (name: string, done: number, total: number) => void;
}

function generationDefaults(config: ModelConfig): GenerationParams {
  const out: Record<string, unknown> = {};
  for (const key of ["temperature", "maxTokens", "topP", "seed", "frequencyPenalty", "presencePenalty"] as const) {
    if (config[key] !== undefined) out[key] = config[key];
  }
  return out;
}

/** Creates the provider's model for one config entry, without middleware. */
export async function createProviderModel(
  name: string,
  config: ModelConfig,
  options: CreateModelOptions,
): Promise<LanguageModel> {
  if (config.provider === "llama-cpp") {
    return LlamaCppModel.load({
      model: config.model,
      baseDir: options.baseDir,
      contextSize: config.contextSize,
      sequences: config.sequences,
      gpu: config.gpu,
      flashAttention: config.flashAttention,
      chatTemplate: config.chatTemplate,
      defaults: generationDefaults(config),
      downloadTimeouts: { connectTimeoutMs: config.downloadConnectTimeoutMs, idleTimeoutMs: config.downloadIdleTimeoutMs },
      ...(config.batchSize !== undefined ? { batchSize: config.batchSize } : {}),
      ...(config.threads !== undefined ? { threads: config.threads } : {}),
      ...(options.maxThreads !== undefined ? { maxThreads: options.maxThreads } : {}),
      ...(options.onDownloadProgress
        ? { onDownloadProgress: (done: number, total: number) => options.onDownloadProgress?.(name, done, total) }
        : {}),
    });
  }
  const env = options.env ?? process.env;
  let apiKey: string | undefined;
  if (config.apiKeyEnv) {
    apiKey = env[config.apiKeyEnv];
    if (!apiKey) {
      throw new IterAlignError(
        "CONFIG_INVALID",
        `models.${name}.apiKeyEnv: environment variable ${config.apiKeyEnv} is not set`,
      );
    }
  }
  return new OpenAICompatibleModel({
    baseUrl: config.baseUrl,
    model: config.model,
    timeoutMs: config.timeoutMs,
    structuredOutput: config.structuredOutput,
    scoring: config.scoring,
    embeddings: config.embeddings,
    defaults: generationDefaults(config),
    ...(apiKey ? { apiKey } : {}),
  });
}

/** Names the model each role uses; `judge` falls back to the oracle. */
export function modelNameForRole(config: IterAlignConfig, role: Role): string | undefined {
  if (role === "judge") return config.roles.judge ?? config.roles.oracle;
  return config.roles[role];
}

export interface ModelSetOptions extends CreateModelOptions {
  readonly config: IterAlignConfig;
  /** Response cache and accounting store; without it calls are neither cached nor recorded. */
  readonly callLog?: CallLog;
  readonly runId?: string;
  readonly meter?: Meter;
}

/**
 * The models of a config, bound to roles. Each config entry is created once (roles naming the same entry
 * share it, and the engine shares a GGUF loaded by several entries), wrapped in cache, concurrency limit,
 * retry, timeout and accounting. Concurrency limits are shared per endpoint.
 */
export class ModelSet {
  readonly meter: Meter;
  private readonly raw = new Map<string, Promise<LanguageModel>>();
  private readonly wrapped = new Map<string, LanguageModel>();
  private readonly limiters = new Map<string, Limiter>();
  /** Entries made at run time (a role rebound to trained weights), by name. */
  private readonly extraEntries = new Map<string, ModelConfig>();
  private readonly roleOverrides = new Map<Role, string>();

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

  /** The model of a config entry; `role` is recorded with its calls. */
  async byName(name: string, role?: string): Promise<LanguageModel> {
    const config = this.options.config.models[name] ?? this.extraEntries.get(name);
    if (!config) throw new IterAlignError("CONFIG_INVALID", `unknown model '${name}' (defined: ${this.modelNames.join(", ")})`);
    const key = `${name}\u0000${role ?? ""}`;
    const existing = this.wrapped.get(key);
    if (existing) return existing;
    let raw = this.raw.get(name);
    if (!raw) {
      const maxThreads = this.options.maxThreads ?? this.options.config.engine.maxThreads;
      raw = createProviderModel(name, config, { ...this.options, ...(maxThreads !== undefined ? { maxThreads } : {}) });
      raw.catch(() => this.raw.delete(name));
      this.raw.set(name, raw);
    }
    const limiter = this.limiterFor(name, config);
    const model = applyMiddleware(await raw, {
      timeout: { timeoutMs: config.timeoutMs },
      retry: { maxRetries: config.retries, maxRetryAfterMs: config.timeoutMs },
      ...(limiter ? { concurrency: limiter } : {}),
      meter: this.meter,
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
    this.wrapped.set(key, model);
    return model;
  }

  /**
   * HTTP endpoints get a shared limit. Embedded models get none unless configured: their engine cuts concurrent
   * calls into fixed decode groups, and a limit of `sequences` above it would feed it a batch in dribs instead of
   * as one wave, which changes the groups (and so the numerics) with timing.
   */
  private limiterFor(name: string, config: ModelConfig): Limiter | undefined {
    if (config.provider === "llama-cpp" && config.concurrency === undefined) return undefined;
    const endpoint = config.provider === "llama-cpp" ? `llama-cpp:${name}` : `http:${config.baseUrl}`;
    let limiter = this.limiters.get(endpoint);
    if (!limiter) {
      const max = config.concurrency ?? HTTP_CONCURRENCY;
      limiter = createLimiter(max);
      this.limiters.set(endpoint, limiter);
    }
    return limiter;
  }

  /**
   * Binds `role` to the config entry of that role with another `model` (a trained GGUF path or a fine-tuned
   * model id); other roles naming the same entry keep the original. The role's previous override is freed.
   */
  async rebindRole(role: Role, model: string): Promise<void> {
    const base = modelNameForRole(this.options.config, role);
    const entry = base === undefined ? undefined : this.options.config.models[base];
    if (!base || !entry) throw new IterAlignError("CONFIG_INVALID", `roles.${role}: no model is bound to the ${role} role`);
    const previous = this.roleOverrides.get(role);
    const name = `${base}@${createHash("sha256").update(model).digest("hex").slice(0, 12)}`;
    if (previous === name) return;
    this.extraEntries.set(name, { ...entry, model });
    this.roleOverrides.set(role, name);
    if (previous) await this.closeEntry(previous);
  }

  private async closeEntry(name: string): Promise<void> {
    const raw = this.raw.get(name);
    this.raw.delete(name);
    for (const key of [...this.wrapped.keys()]) if (key.startsWith(`${name}\u0000`)) this.wrapped.delete(key);
    this.extraEntries.delete(name);
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
 * Checks, before a run is created or any model loaded, what can be checked of the models the roles use without
 * loading them: a local GGUF exists, is readable and is a whole GGUF file. Bad model files are user input and
 * fail here (exit code 2) instead of after the run has started.
 */
export async function preflightModels(config: IterAlignConfig, baseDir: string): Promise<void> {
  const names = new Set<string>();
  for (const role of ROLES) {
    const name = modelNameForRole(config, role);
    if (name !== undefined) names.add(name);
  }
  for (const name of names) {
    const entry = config.models[name];
    if (entry?.provider !== "llama-cpp" || isRemoteModelRef(entry.model)) continue;
    try {
      checkGgufFile(await resolveModelPath(entry.model, { baseDir }));
    } catch (err) {
      if (err instanceof IterAlignError) {
        throw new IterAlignError(err.code, `models.${name}.model: ${err.message}`, { cause: err, details: { ...err.details, model: name } });
      }
      throw err;
    }
  }
}
