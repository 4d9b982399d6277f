import { IterAlignError } from "../spec/errors.js";
import { requireCapability, type Capability, type LanguageModel } from "../spec/language-model.js";
import type { Benchmark, BenchmarkResult, BosConvention } from "../spec/benchmark.js";
import type { EvalReport } from "./report.js";

/** What the judge of a judged benchmark must offer: structured verdicts. */
export const JUDGE_CAPABILITIES: readonly Capability[] = ["generateObject"];

/** Progress of one benchmark within an evaluation. */
export interface EvalProgress {
  readonly benchmark: string;
  /** 0-based position of the benchmark in the list, and the list's length. */
  readonly index: number;
  readonly count: number;
  readonly done: number;
  readonly total: number;
}

/** Options of {@link runEvaluation}. */
export interface RunEvaluationOptions {
  readonly benchmarks: readonly Benchmark[];
  readonly models: { readonly model: LanguageModel; readonly judge?: LanguageModel };
  /** Scoring mode of the multiple-choice benchmarks; judged benchmarks always report `judge`. */
  readonly mode: "loglik" | "generative";
  /** Loglik scoring's BOS convention (default `model`; `none` matches lm-evaluation-harness). */
  readonly bos?: BosConvention;
  /** At most this many items per benchmark (the first N in each dataset's order). */
  readonly limit?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: EvalProgress) => void;
  /** Called after each benchmark finished (e.g. to print its metrics as they come). */
  readonly onResult?: (result: BenchmarkResult) => void;
}

/**
 * Checks, before any model call, that every benchmark can run: the evaluated model offers each capability the
 * benchmark needs in `mode`, and a judged benchmark has a judge that gives structured output. Throws
 * CAPABILITY_MISSING naming the benchmark, the mode and the capability, or USAGE when a judge is missing.
 */
export function checkEvaluation(options: Pick<RunEvaluationOptions, "benchmarks" | "models" | "mode">): void {
  const { benchmarks, models, mode } = options;
  if (benchmarks.length === 0) throw new IterAlignError("USAGE", "no benchmarks to run");
  const names = new Set<string>();
  for (const benchmark of benchmarks) {
    if (names.has(benchmark.name)) throw new IterAlignError("USAGE", `benchmark '${benchmark.name}' is listed twice`);
    names.add(benchmark.name);
    for (const capability of benchmark.requires(mode)) {
      requireCapability(models.model, capability, `benchmark '${benchmark.name}' in ${mode} mode`);
    }
    if (benchmark.needsJudge) {
      if (!models.judge) {
        throw new IterAlignError("USAGE", `benchmark '${benchmark.name}' needs a judge model (the judge role, or the oracle when no judge is set)`);
      }
      for (const capability of JUDGE_CAPABILITIES) requireCapability(models.judge, capability, `the judge of benchmark '${benchmark.name}'`);
    }
  }
}

/**
 * Runs benchmarks one after another on one model after checking them all ({@link checkEvaluation}), so a
 * missing capability fails in a second, not after an hour of other benchmarks.
 */
export async function runEvaluation(options: RunEvaluationOptions): Promise<EvalReport> {
  checkEvaluation(options);
  const { benchmarks, models, mode, limit, signal } = options;
  const started = new Date();
  const startedMs = performance.now();
  const results: BenchmarkResult[] = [];
  const usesJudge = benchmarks.some((b) => b.needsJudge);
  for (const [index, benchmark] of benchmarks.entries()) {
    signal?.throwIfAborted();
    const onProgress = options.onProgress;
    const result = await benchmark.run(
      { model: models.model, ...(benchmark.needsJudge && models.judge ? { judge: models.judge } : {}) },
      {
        mode,
        ...(limit !== undefined ? { limit } : {}),
        ...(options.bos ? { bos: options.bos } : {}),
        ...(signal ? { signal } : {}),
        ...(onProgress
          ? { onProgress: (done: number, total: number) => onProgress({ benchmark: benchmark.name, index, count: benchmarks.length, done, total }) }
          : {}),
      },
    );
    results.push(result);
    options.onResult?.(result);
  }
  return {
    model: models.model.modelId,
    ...(usesJudge && models.judge ? { judge: models.judge.modelId } : {}),
    mode,
    ...(limit !== undefined ? { limit } : {}),
    ...(options.bos === "none" ? { bos: options.bos } : {}),
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    seconds: (performance.now() - startedMs) / 1000,
    results,
  };
}
