import { NativeQueue } from "../../native/native-queue.js";
import {
  startScorerProcess,
  type NativeScoreResult,
  type ScoreOptions,
  type ScorerProcess,
  type ScorerReady,
} from "../../native/scorer-process.js";
import { nativeBinary, nativeEngineArgs, NativePath, type NativeEngineOptions, type NativeMode } from "./native-path.js";

export type { NativeScoreResult, ScoreOptions } from "../../native/scorer-process.js";

/** How to start an `iteralign-scorer` process (`contextSize`: cells shared by a context and its continuations). */
export interface NativeScorerOptions extends NativeEngineOptions {
  /**
   * Contexts are decoded in chunks of this many tokens starting at multiples of it, and the leading whole chunks
   * a context shares with the previous request's are reused. Default 32.
   */
  readonly chunk?: number;
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
    const binary = options.binary ?? nativeBinary("iteralign-scorer", "native scorer");
    const spawn = (): Promise<{ proc: ScorerProcess; info: ScorerReady }> => NativeScorer.spawn(options, binary);
    return new NativeScorer(new NativeQueue(await spawn(), spawn, `the native scorer for ${options.modelFile}`, "scoring"));
  }

  private static spawn(options: NativeScorerOptions, binary: string): Promise<{ proc: ScorerProcess; info: ScorerReady }> {
    // One sequence holds the context, the others score continuations: at least 2.
    const args = [...nativeEngineArgs(options, 2), "--chunk", String(options.chunk ?? 32)];
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
