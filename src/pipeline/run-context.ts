import type { EvalTextSet } from "../datasets/contamination.js";
import type { IterAlignConfig } from "../config/config-schema.js";
import type { Meter } from "../providers/middleware/accounting.js";
import type { LanguageModel } from "../spec/language-model.js";
import type { RunStore } from "../store/run-store.js";
import type { RunLayout } from "./run-layout.js";

/** Time source; injected so tests can fix it. */
export interface Clock {
  isoNow(): string;
  /** Monotonic milliseconds. */
  now(): number;
}

export const systemClock: Clock = {
  isoNow: () => new Date().toISOString(),
  now: () => performance.now(),
};

/** Progress events the loop emits (the CLI renders them as bars). */
export type LoopEvent =
  | { type: "iteration-start"; iteration: number; batch: number; remaining: number }
  | { type: "stage-start"; iteration: number; stage: string; items: number }
  | { type: "stage-progress"; iteration: number; stage: string; done: number; items: number }
  | {
      type: "stage-end";
      iteration: number;
      stage: string;
      items: number;
      errors: number;
      seconds: number;
      resumed: boolean;
      /** Error rows of a stored stage that were run again on resume. */
      retried?: number;
      promptTokens: number;
      completionTokens: number;
      /** Dollars the stage's answers cost (cached ones included), when the models have prices. */
      costUsd?: number;
      /** Dollars this process paid for the stage. */
      spentUsd?: number;
    }
  | { type: "iteration-end"; iteration: number; summary: unknown }
  | { type: "stop"; reason: string; errorsByStage: Readonly<Record<string, number>> };

/** The models of the roles the loop uses. */
export interface LoopModels {
  readonly target: LanguageModel;
  readonly oracle: LanguageModel;
  readonly judge: LanguageModel;
  readonly embedder?: LanguageModel;
  /** `roles.judges`: a panel for the judge stage (combined by `loop.judgeRule`). */
  readonly judges?: readonly LanguageModel[];
}

/** Everything one run's stages need. */
export interface RunContext {
  readonly runId: string;
  readonly config: IterAlignConfig;
  readonly baseDir: string;
  readonly store: RunStore;
  readonly models: LoopModels;
  readonly layout: RunLayout;
  readonly clock: Clock;
  readonly signal: AbortSignal;
  readonly onEvent: (event: LoopEvent) => void;
  /** Tallies the run's model calls; stages record their tokens from it. */
  readonly meter?: Meter;
  /** `loop.costBudget`: throws BUDGET_EXCEEDED before a stage that would pass it. */
  readonly budget?: StageBudget;
  /** The evaluation sets the run uses (held-out split, benchmarks), loaded once: the contamination check's reference. */
  readonly evalTexts?: () => Promise<readonly EvalTextSet[]>;
}

/** Checked before each stage is dispatched. */
export interface StageBudget {
  beforeStage(iteration: number, stage: string, items: number): void;
}
