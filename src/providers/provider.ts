import type { z } from "zod";
import type { GuardConfig } from "../spec/guard.js";
import type { BatchJobLog } from "../spec/call-log.js";
import type { LanguageModel } from "../spec/language-model.js";
import type { ModelRef } from "../spec/trainer.js";

export type { ModelRef };
import type { Price } from "./model-config-fields.js";

/** What every provider's model entry has (each provider's schema adds its own fields). */
export interface ModelConfigBase {
  readonly provider: string;
  readonly model: string;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly concurrency?: number | undefined;
  readonly concurrencyFloor?: number | undefined;
  readonly rpm?: number | undefined;
  readonly tpm?: number | undefined;
  readonly pricing?: Price | undefined;
  readonly temperature?: number | undefined;
  readonly maxTokens?: number | undefined;
  readonly topP?: number | undefined;
  readonly seed?: number | undefined;
  readonly frequencyPenalty?: number | undefined;
  readonly presencePenalty?: number | undefined;
  readonly guard?: GuardConfig | undefined;
}


/** What a provider's factory gets besides its config entry. */
export interface ProviderContext {
  /** Directory relative paths are resolved against (the config file's). */
  readonly baseDir: string;
  /** Where API keys are read from (`apiKeyEnv`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Engine-wide thread cap (embedded engines). */
  readonly maxThreads?: number;
  /** Download progress of remote model files. */
  readonly onDownloadProgress?: (done: number, total: number) => void;
  /** Where an HTTP provider reports each response's rate-limit headers and status (adaptive limits). */
  readonly rateLimits?: RateLimitObserver;
  /** Where batch jobs are recorded (the run store), so a restarted run polls the same job. */
  readonly batchLog?: BatchJobLog;
  /** The store's folder (batch files go under it unless configured). */
  readonly dataDir?: string;
  /** Told about long waits (batch jobs); the CLI prints it. */
  readonly notify?: (message: string) => void;
}

/** Receives what an endpoint says about its limits. */
export interface RateLimitObserver {
  observe(response: { readonly status: number; readonly headers: Headers; readonly endpoint: string }): void;
}

/**
 * One provider, as one entry of the registry: its config schema, its factory, and how its models are identified
 * and shared. Nothing outside the provider's own folder branches on its name.
 */
export interface ProviderDefinition<C extends ModelConfigBase = ModelConfigBase> {
  /** The `provider` value of its config entries. */
  readonly id: string;
  /** A strict zod object whose `provider` field is the literal {@link id}. */
  readonly configSchema: z.ZodType<C>;
  /** Makes the model of one config entry (without middleware). Loads engine code lazily. */
  create(name: string, config: C, context: ProviderContext): Promise<LanguageModel>;
  /**
   * The endpoint a config entry talks to: entries with the same endpoint share one concurrency limit and one
   * rate-limit state. Undefined for an in-process engine with no limit configured (it schedules calls itself).
   */
  endpoint(name: string, config: C): string | undefined;
  /** Calls in flight per endpoint when the config sets no `concurrency`. */
  readonly defaultConcurrency: number;
  /** True for HTTP APIs: their limit adapts to rate limits (additive increase, multiplicative decrease). */
  readonly adaptive: boolean;
  /** Checks what can be checked before a run is created, without loading or calling the model. */
  preflight?(name: string, config: C, baseDir: string): Promise<void>;
  /** The entry's model as a trainer sees it. */
  modelRef(config: C, baseDir: string): Promise<ModelRef>;
  /** An entry like `config` serving the trained model `ref`; throws TRAINING_FAILED when this provider cannot. */
  withTrainedModel(config: C, ref: ModelRef): C;
  /**
   * A model named by a trainer's result (`model` as written, relative paths against `baseDir`) in the form this
   * provider serves it, checked as far as possible; `what` names the source in errors. Throws TRAINING_FAILED.
   */
  resolveTrainedModel(model: string, baseDir: string, what: string): ModelRef;
  /** Whether a model reference stored earlier still points at something (a trained file not deleted since). */
  stillExists(ref: ModelRef): boolean;
}
