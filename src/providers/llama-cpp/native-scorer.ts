import { availableParallelism } from "node:os";
import { findLlamaBuild } from "../../native/llama-build.js";
import { NativeQueue } from "../../native/native-queue.js";
import {
  startScorerProcess,
  type NativeScoreResult,
  type ScoreOptions,
  type ScorerProcess,
  type ScorerReady,
} from "../../native/scorer-process.js";
import { IterAlignError } from "../../spec/errors.js";
import { NativePath, type NativeMode } from "./native-path.js";

export type { NativeScoreResult, ScoreOptions } from "../../native/scorer-process.js";

/** How to start an `iteralign-scorer` process. */
export interface NativeScorerOptions {
  /** The GGUF file to load (the same file the engine path uses). */
  readonly modelFile: string;
  /** GGUF LoRA adapters applied to the model at scale 1 (`--lora`). */
  readonly adapters?: readonly string[];
  /** KV cells shared by the context and the continuations of one group (tokens). */
  readonly contextSize: number;
  /** CPU threads for evaluation; 0 means all cores. */
  readonly threads: number;
  /** Sequences: one holds the context, the others score up to `sequences - 1` continuations per forward pass. */
  readonly sequences: number;
  /** Tokens per decode batch. Default 512, as node-llama-cpp. */
  readonly batchSize?: number;
  /**
   * Contexts are decoded in chunks of this many tokens starting at multiples of it, and the leading whole chunks
   * a context shares with the previous request's are reused. Default 32.
   */
  readonly chunk?: number;
  /** How long to wait for the model to load, in ms. Default 120 000. */
  readonly startTimeoutMs?: number;
  /** The scorer binary. Default: the one `npm run build:llama -- iteralign-scorer` built. */
  readonly binary?: string;
}

/**
 * Log-likelihood scoring in native code: an `iteralign-scorer` process (llama.cpp, same source as
 * node-llama-cpp) that reads only the needed token's log-softmax at each position, instead of node-llama-cpp's
 * full-vocabulary probability map. Requests run one at a time in FIFO order (see {@link NativeQueue}: a dead process
 * is restarted for the next request); each reuses the keys and values of the context prefix it shares with the
 * previous request (a few-shot primer is evaluated once per benchmark, not once per question), with scores equal to
 * a fresh evaluation.
 */
export class NativeScorer {
  private constructor(private readonly queue: NativeQueue<ScorerProcess, ScorerReady>) {}

  /** Finds the scorer binary, starts it on the model and waits until the model is loaded. */
  static async start(options: NativeScorerOptions): Promise<NativeScorer> {
    const binary = options.binary ?? findLlamaBuild(["iteralign-scorer"])?.binaries["iteralign-scorer"];
    if (!binary) {
      throw new IterAlignError(
        "BUILD_FAILED",
        "the native scorer is not built (or is older than its source): run `iteralign setup iteralign-scorer` (from a checkout: `npm run build:llama -- iteralign-scorer`)",
      );
    }
    const spawn = (): Promise<{ proc: ScorerProcess; info: ScorerReady }> => NativeScorer.spawn(options, binary);
    return new NativeScorer(new NativeQueue(await spawn(), spawn, `the native scorer for ${options.modelFile}`, "scoring"));
  }

  private static spawn(options: NativeScorerOptions, binary: string): Promise<{ proc: ScorerProcess; info: ScorerReady }> {
    const args = [
      "--model", options.modelFile,
      ...(options.adapters ?? []).flatMap((file) => ["--lora", file]),
      "--ctx", String(options.contextSize),
      // 0 means all cores, as node-llama-cpp's maxThreads.
      "--threads", String(options.threads > 0 ? options.threads : availableParallelism()),
      "--seqs", String(Math.max(2, options.sequences)),
      "--batch", String(options.batchSize ?? 512),
      "--chunk", String(options.chunk ?? 32),
    ];
    return startScorerProcess(binary, args, options.modelFile, options.startTimeoutMs ?? 120_000);
  }

  /** Vocabulary size of the loaded model. */
  get nVocab(): number {
    return this.queue.info.nVocab;
  }

  /** KV cells of the scorer's context (llama.cpp rounds the requested size up to a multiple of 256). */
  get contextSize(): number {
    return this.queue.info.nCtx;
  }

  /** Context chunk size: reuse of a previous context is in whole chunks of this many tokens. */
  get chunk(): number {
    return this.queue.info.chunk;
  }

  /** Process id of the current scorer process (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.queue.pid;
  }

  /**
   * Scores each continuation (token ids) after the context (token ids). Token ids outside the vocabulary or a
   * context plus continuation longer than the context size give a USAGE error and leave the scorer serving.
   */
  score(
    context: readonly number[],
    continuations: readonly (readonly number[])[],
    signal?: AbortSignal,
    options: ScoreOptions = {},
  ): Promise<NativeScoreResult> {
    return this.queue.run((proc, id) => proc.send(id, context, continuations, options), signal);
  }

  /** Stops the scorer process. Requests still queued fail with USAGE. */
  close(): Promise<void> {
    return this.queue.close();
  }

  /** Kills the scorer process as a crash would (for tests of the restart path). */
  killForTesting(): void {
    this.queue.kill();
  }
}

/** Which scoring path a model uses; see {@link LlamaCppModelOptions.scoring}. */
export type ScoringMode = NativeMode;

/**
 * One model's choice between the native scorer and the engine path (see {@link NativePath}), and its scorer,
 * started on first use.
 */
export class NativeScoring {
  private readonly native: NativePath<NativeScorer>;

  constructor(mode: ScoringMode, options: NativeScorerOptions) {
    this.native = new NativePath(mode, "iteralign-scorer", () => NativeScorer.start(options), `the native scorer for ${options.modelFile}`);
  }

  /** The path in use; the first read looks for the scorer binary. */
  get path(): "native" | "engine" {
    return this.native.path;
  }

  /**
   * Scores tokenized continuations, or returns undefined when the engine path should (auto mode after a failed
   * start). The caller has already checked `path === "native"`.
   */
  async score(
    tokens: { readonly context: readonly number[]; readonly continuations: readonly (readonly number[])[] },
    signal?: AbortSignal,
    options: ScoreOptions = {},
  ): Promise<NativeScoreResult | undefined> {
    const scorer = await this.native.get();
    return scorer?.score(tokens.context, tokens.continuations, signal, options);
  }

  /** Stops the scorer process if one was started. */
  close(): Promise<void> {
    return this.native.close();
  }
}
