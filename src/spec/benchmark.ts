import type { Capability, LanguageModel } from "./language-model.js";

/**
 * Benchmarks: a declared dataset, prompt format, scorer and required capability. Every benchmark returns
 * metrics that carry how they were obtained (`mode`) and per-item results that reproduce them.
 */

/** `loglik`: log-likelihood of each choice (needs scoreContinuations). `generative`: the model answers with a
 * letter that is parsed. `judge`: the judge labels the model's free answers (ASR, XSTest). */
export type ScoringMode = "loglik" | "generative" | "judge";

export interface Metric {
  /** e.g. `mc1`, `mc2`, `accuracy`, `asr`, `safe_refusal_rate`. */
  readonly name: string;
  readonly value: number;
  /** Items the value is computed over. */
  readonly n: number;
  readonly mode: ScoringMode;
  readonly higherIsBetter: boolean;
  /** 95% confidence interval (Wilson score for proportions), when the metric is a proportion. */
  readonly ci95?: readonly [number, number];
  /** Set for per-category breakdowns. */
  readonly category?: string;
}

/** One scored item; `details` holds the benchmark's specifics (each choice's logprob and token count, ...). */
export interface ItemResult {
  readonly id: string;
  readonly category?: string;
  /** Predicted choice index, letter, or label; null when nothing could be parsed. */
  readonly prediction: string | number | null;
  /** The gold answer: choice index (or indices joined by `|`) or label. */
  readonly label: string | number | null;
  readonly correct?: boolean;
  readonly details: Readonly<Record<string, unknown>>;
}

export interface BenchmarkResult {
  /** e.g. `truthfulqa`, `hhh`, `asr`, `xstest`, `mc:<name>`. */
  readonly benchmark: string;
  readonly mode: ScoringMode;
  readonly model: string;
  /**
   * Loglik benchmarks: how the log-likelihoods were computed (`native`, `engine`, `echo`; `a+b` when items used
   * several), so a number can always be traced to the code path that produced it.
   */
  readonly scoringPath?: string;
  /** Loglik benchmarks: the BOS convention the contexts were scored with. */
  readonly bos?: BosConvention;
  readonly metrics: readonly Metric[];
  readonly items: readonly ItemResult[];
}

export interface BenchmarkModels {
  /** The model being evaluated. */
  readonly model: LanguageModel;
  /** Labels free answers (ASR, XSTest); required by judge-mode benchmarks. */
  readonly judge?: LanguageModel;
}

export interface BenchmarkRunOptions {
  /** `loglik` or `generative` for multiple-choice benchmarks; judge benchmarks ignore it. */
  readonly mode: "loglik" | "generative";
  /** Evaluate at most this many items (first N in the dataset's order). */
  readonly limit?: number;
  /**
   * Log-likelihood scoring's BOS convention: `model` (default) puts a BOS token before each context where the
   * model's tokenizer asks for one; `none` never does, as lm-evaluation-harness does by default.
   */
  readonly bos?: BosConvention;
  readonly signal?: AbortSignal;
  readonly onProgress?: (done: number, total: number) => void;
}

/** Whether log-likelihood contexts start with a BOS token: the model's convention, or never (lm-eval's). */
export type BosConvention = "model" | "none";

export interface Benchmark {
  readonly name: string;
  readonly description: string;
  /** Capabilities the evaluated model needs in `mode` (checked before any work; fail fast). */
  requires(mode: "loglik" | "generative"): readonly Capability[];
  /** Whether a judge model is needed. */
  readonly needsJudge: boolean;
  run(models: BenchmarkModels, options: BenchmarkRunOptions): Promise<BenchmarkResult>;
}
