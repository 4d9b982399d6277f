import type { Principle, TrainingExample } from "./records.js";

/**
 * Weight training between iterations. The loop hands a trainer the iteration's gated examples (and every
 * earlier iteration's), the model the iteration red-teamed, and a durable state; the trainer returns the model
 * the next iteration red-teams. Trainers never see constitutions: the examples' prompts are constitution-free.
 */

/**
 * A model a trainer starts from or produces: the provider that serves it and its id there (`llama-cpp`: an
 * absolute GGUF path; `openai-compatible`: the server's model name, with a `revision` when the name alone does
 * not identify the weights).
 */
export interface ModelRef {
  readonly provider: string;
  readonly model: string;
  /** Identifies the weights when `model` alone does not (a checkpoint hash): part of the cache key. */
  readonly revision?: string;
  /**
   * LoRA adapters applied on top of `model` (`llama-cpp`: absolute paths of GGUF LoRA files, each at scale 1), in
   * order: a base model plus the adapter a trainer made, served without merging. Part of the cache key.
   */
  readonly adapters?: readonly string[];
  /** A system prompt every call to this model gets (the `in-context` trainer's constitution; no weights change). */
  readonly systemPrompt?: string;
}

/** Paths (absolute) of the iteration's export files, written before training starts. */
export interface TrainFiles {
  /** FastChat/ShareGPT SFT (the paper's format). */
  readonly sharegpt: string;
  /** TRL `messages` SFT. */
  readonly trlSft: string;
  /** OpenAI chat fine-tuning JSONL. */
  readonly openaiChat: string;
  /** TRL `prompt/chosen/rejected`. */
  readonly trlPreference: string;
  /** OpenAI preference (DPO) JSONL. */
  readonly openaiPreference: string;
}

/**
 * Durable key-value state of one iteration's training, committed to the run store on every `set` (before
 * `set` returns). A trainer keeps what it needs to pick up after a crash here, e.g. a hosted job id.
 */
export interface TrainerState {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
}

/** Progress a trainer reports while it works (rendered by the CLI, kept in the training log). */
export type TrainProgress =
  | { readonly type: "status"; readonly message: string }
  | { readonly type: "log"; readonly line: string }
  | {
      readonly type: "step";
      readonly step: number;
      readonly totalSteps?: number;
      readonly epoch?: number;
      readonly loss?: number;
      readonly tokensPerSecond?: number;
    };

export interface TrainInput {
  readonly runId: string;
  readonly iteration: number;
  /** The target of the config (iteration 0's model). */
  readonly base: ModelRef;
  /** The model this iteration red-teamed (the previous iteration's trained model, or the base). */
  readonly current: ModelRef;
  /**
   * The gated examples to train on: this iteration's, plus those of earlier iterations that were carried over
   * because there were fewer than the trainer's `minExamples`.
   */
  readonly examples: readonly TrainingExample[];
  /** The gated examples of every iteration so far, this one included, in iteration order. */
  readonly allExamples: readonly TrainingExample[];
  /** The constitution's active principles after this iteration (a trainer never puts them into training prompts). */
  readonly principles: readonly Principle[];
  /** The export files of `examples` (this iteration's own files when nothing was carried over). */
  readonly files: TrainFiles;
  /** Directory for the trainer's outputs (models, logs, loss curve); exists, kept with the run. */
  readonly outDir: string;
  readonly state: TrainerState;
  readonly signal: AbortSignal;
  readonly onProgress: (progress: TrainProgress) => void;
}

export interface TrainResult {
  /** The model the next iteration uses. */
  readonly model: ModelRef;
  /** Trainer name, e.g. `llama-cpp`. */
  readonly trainer: string;
  /** The settings training used (recorded with the iteration). */
  readonly settings: Readonly<Record<string, unknown>>;
  /** sha256 of the training data the trainer consumed (as sent/written). */
  readonly dataHash: string;
  /** Examples trained on. */
  readonly examples: number;
  readonly metrics?: {
    readonly finalLoss?: number;
    readonly tokensPerSecond?: number;
    readonly seconds?: number;
    readonly lossCurve?: ReadonlyArray<{ readonly step: number; readonly loss: number }>;
  };
}

export interface Trainer {
  readonly name: string;
  /**
   * Fewest examples one training accepts (OpenAI's fine-tuning API refuses files with fewer than 10). While an
   * iteration has fewer, the loop carries its examples over and trains once enough have accumulated. Default 1.
   */
  readonly minExamples?: number;
  /** False for a trainer that trains from the constitution, not the examples (it runs with none). Default true. */
  readonly needsExamples?: boolean;
  train(input: TrainInput): Promise<TrainResult>;
}

