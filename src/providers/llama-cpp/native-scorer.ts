import { availableParallelism } from "node:os";
import { findLlamaBuild } from "../../native/llama-build.js";
import {
  spawnScorerProcess,
  type NativeScoreResult,
  type ScoreOptions,
  type ScorerProcess,
  type ScorerReady,
} from "../../native/scorer-process.js";
import { IterAlignError } from "../../spec/errors.js";

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
 * full-vocabulary probability map. Requests run one at a time in FIFO order; each reuses the keys and values of
 * the context prefix it shares with the previous request (a few-shot primer is evaluated once per benchmark, not
 * once per question), with scores equal to a fresh evaluation. If the process dies, the request in flight fails
 * with GENERATION_FAILED and the next request starts a fresh process.
 */
export class NativeScorer {
  private proc: ScorerProcess;
  private tail: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly options: NativeScorerOptions,
    private readonly binary: string,
    first: ScorerProcess,
    private info: ScorerReady,
  ) {
    this.proc = first;
  }

  /** Finds the scorer binary, starts it on the model and waits until the model is loaded. */
  static async start(options: NativeScorerOptions): Promise<NativeScorer> {
    const binary = options.binary ?? findLlamaBuild(["iteralign-scorer"])?.binaries["iteralign-scorer"];
    if (!binary) {
      throw new IterAlignError(
        "BUILD_FAILED",
        "the native scorer is not built (or is older than its source): run `iteralign setup iteralign-scorer` (from a checkout: `npm run build:llama -- iteralign-scorer`)",
      );
    }
    const { proc, info } = await NativeScorer.spawn(options, binary);
    return new NativeScorer(options, binary, proc, info);
  }

  private static async spawn(options: NativeScorerOptions, binary: string): Promise<{ proc: ScorerProcess; info: ScorerReady }> {
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
    const proc = spawnScorerProcess(binary, args, options.modelFile);
    const timeoutMs = options.startTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
    });
    try {
      const info = await Promise.race([proc.ready, timeout]);
      return { proc, info };
    } catch (err) {
      await proc.stop(0);
      const tail = proc.stderrTail.length > 0 ? `; last stderr lines:\n${proc.stderrTail.join("\n")}` : "";
      const why = err instanceof Error && err.message === "timeout" ? `did not load within ${timeoutMs} ms` : "exited while loading";
      throw new IterAlignError("MODEL_LOAD_FAILED", `the native scorer for ${options.modelFile} ${why}${tail}`, {
        cause: err,
        details: { modelFile: options.modelFile, binary },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Vocabulary size of the loaded model. */
  get nVocab(): number {
    return this.info.nVocab;
  }

  /** KV cells of the scorer's context (llama.cpp rounds the requested size up to a multiple of 256). */
  get contextSize(): number {
    return this.info.nCtx;
  }

  /** Context chunk size: reuse of a previous context is in whole chunks of this many tokens. */
  get chunk(): number {
    return this.info.chunk;
  }

  /** Process id of the current scorer process (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.proc.pid;
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
    const job = this.tail.then(() => this.run(context, continuations, signal, options));
    this.tail = job.catch(() => undefined);
    if (!signal) return job;
    // An abort rejects the caller at once; a request already sent still runs to completion in the scorer
    // (interrupting it would mean killing the process) and its answer is dropped.
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(new IterAlignError("ABORTED", "scoring aborted"));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      job.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** Stops the scorer process. Requests still queued fail with USAGE. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.proc.stop();
  }

  /** Kills the scorer process as a crash would (for tests of the restart path). */
  killForTesting(): void {
    this.proc.kill("SIGKILL");
  }

  private async run(
    context: readonly number[],
    continuations: readonly (readonly number[])[],
    signal: AbortSignal | undefined,
    options: ScoreOptions,
  ): Promise<NativeScoreResult> {
    if (this.closed) throw new IterAlignError("USAGE", `the native scorer for ${this.options.modelFile} is closed`);
    if (signal?.aborted) throw new IterAlignError("ABORTED", "scoring aborted");
    if (this.proc.dead) {
      // The request that was in flight when it died already failed; this one gets one fresh process, and a
      // failed start is reported rather than retried, so a scorer that cannot start does not loop.
      const { proc, info } = await NativeScorer.spawn(this.options, this.binary);
      this.proc = proc;
      this.info = info;
    }
    return this.proc.send(this.nextId++, context, continuations, options);
  }
}

/** True when the scorer binary is built from the current source; false also when that cannot be checked (no git). */
function scorerBuilt(): boolean {
  try {
    return findLlamaBuild(["iteralign-scorer"]) !== undefined;
  } catch {
    return false;
  }
}

/** Which scoring path a model uses; see {@link LlamaCppModelOptions.scoring}. */
export type ScoringMode = "auto" | "native" | "engine";

/**
 * One model's choice between the native scorer and the engine path, and its scorer, started on first use.
 * `auto` picks native when the scorer binary is built and falls back to the engine for good if the scorer
 * cannot start (an unsupported model, a binary built for another machine); `native` reports those failures.
 */
export class NativeScoring {
  private resolved: "native" | "engine" | undefined;
  private scorer: Promise<NativeScorer> | undefined;
  private closed = false;

  constructor(
    private readonly mode: ScoringMode,
    private readonly options: NativeScorerOptions,
  ) {}

  /** The path in use; the first read looks for the scorer binary. */
  get path(): "native" | "engine" {
    if (this.resolved === undefined) {
      if (this.mode === "auto") this.resolved = scorerBuilt() ? "native" : "engine";
      else this.resolved = this.mode;
    }
    return this.resolved;
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
    if (this.closed) throw new IterAlignError("USAGE", `the native scorer for ${this.options.modelFile} is closed`);
    const starting = (this.scorer ??= NativeScorer.start(this.options));
    let scorer: NativeScorer;
    try {
      scorer = await starting;
    } catch (err) {
      if (this.mode !== "auto") {
        // The next call tries again (after e.g. `npm run build:llama`), unless another call already did.
        if (this.scorer === starting) this.scorer = undefined;
        throw err;
      }
      this.resolved = "engine";
      return undefined;
    }
    return scorer.score(tokens.context, tokens.continuations, signal, options);
  }

  /** Stops the scorer process if one was started. */
  async close(): Promise<void> {
    this.closed = true;
    const scorer = this.scorer;
    this.scorer = undefined;
    if (scorer) await scorer.then((s) => s.close()).catch(() => undefined);
  }
}
