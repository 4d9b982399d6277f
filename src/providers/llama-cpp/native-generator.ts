import { z } from "zod";
import { NativeReadyLine, startJsonLinesProcess, type JsonLinesProcess } from "../../native/json-lines-process.js";
import { NativeQueue } from "../../native/native-queue.js";
import { nativeBinary, nativeEngineArgs, NativePath, type NativeEngineOptions, type NativeMode } from "./native-path.js";

/**
 * How to start an `iteralign-generate` process: `contextSize` is each sequence's cells (a prompt and its answer),
 * `sequences` the largest decode group, `threads` the count at start (each group may set its own, see
 * {@link NativeGroupOptions.threads}).
 */
export interface NativeGeneratorOptions extends NativeEngineOptions {
  /** The generator binary. Default: the one `npm run build:llama -- iteralign-generate` built. */
  readonly binary?: string;
}

/** Sampling and stopping of one sequence, as the generator's protocol takes them. */
export interface NativeSampling {
  readonly maxTokens: number;
  /** 0: greedy (ties go to the lowest token id, as llama.cpp's greedy sampler). */
  readonly temperature: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly seed?: number;
  readonly frequencyPenalty?: number;
  readonly presencePenalty?: number;
  /** Tokens that end the answer (left out of it), besides the model's end-of-generation tokens. */
  readonly stopTokens?: readonly number[];
  /** Texts that end the answer: the token completing one is kept, the caller cuts the text there. */
  readonly stopTexts?: readonly string[];
}

export interface NativeGroupOptions {
  /** Leading tokens every prompt shares: evaluated once, its KV cells copied to the other sequences. */
  readonly prefix?: number;
  /** CPU threads for this group (the engine's current thread budget). */
  readonly threads?: number;
  readonly signal?: AbortSignal;
}

/** One decode group's answers. */
export interface NativeGroupResult {
  readonly results: ReadonlyArray<{ readonly tokens: number[]; readonly finish: "stop" | "length" }>;
  /** Prompt tokens sent, and evaluated (a shared prefix counts once). */
  readonly promptTokens: number;
  readonly evaluatedTokens: number;
  /** Milliseconds in llama_decode, and in sampling; for benchmarks. */
  readonly decodeMs: number;
  readonly sampleMs: number;
}

const ReadyLine = NativeReadyLine;
type GeneratorReady = z.infer<typeof ReadyLine>;

const GroupResponse = z.object({
  results: z.array(z.object({ tokens: z.array(z.number().int()), finish: z.enum(["stop", "length"]) })),
  promptTokens: z.number().int(),
  evaluatedTokens: z.number().int(),
  decodeMs: z.number(),
  sampleMs: z.number(),
});

type GeneratorProcess = JsonLinesProcess<GeneratorReady>;

/**
 * Text generation in native code: an `iteralign-generate` process (llama.cpp, same source as node-llama-cpp) that
 * decodes a whole decode group in lockstep, one batch per step with one token of every live sequence, and samples
 * next to the logits (greedy: one vectorized pass over the vocabulary; penalties on the tokens generated so far),
 * as llama-batched-bench decodes. Groups run one at a time in FIFO order (see {@link NativeQueue}: a dead process is
 * restarted for the next group).
 */
export class NativeGenerator {
  private constructor(private readonly queue: NativeQueue<GeneratorProcess, GeneratorReady>) {}

  /** Finds the generator binary, starts it on the model and waits until the model is loaded. */
  static async start(options: NativeGeneratorOptions): Promise<NativeGenerator> {
    const binary = options.binary ?? nativeBinary("iteralign-generate", "native generator");
    const args = nativeEngineArgs(options, 1);
    const label = { program: "native generator", modelFile: options.modelFile };
    const spawn = (): Promise<{ proc: GeneratorProcess; info: GeneratorReady }> =>
      startJsonLinesProcess(binary, args, label, ReadyLine, options.startTimeoutMs ?? 120_000);
    return new NativeGenerator(new NativeQueue(await spawn(), spawn, `the native generator for ${options.modelFile}`, "generation"));
  }

  /** Sequences of the generator's context: the largest group it takes. */
  get sequences(): number {
    return this.queue.info.nSeq;
  }

  /** KV cells of each sequence. */
  get contextSize(): number {
    return this.queue.info.nCtx;
  }

  get pid(): number | undefined {
    return this.queue.pid;
  }

  /**
   * Generates an answer for each prompt (token ids), decoded together as one group. Bad input (a token id outside
   * the vocabulary, a prompt longer than a sequence) gives a USAGE error and leaves the generator serving.
   */
  generateGroup(
    prompts: readonly (readonly number[])[],
    sampling: readonly NativeSampling[],
    options: NativeGroupOptions = {},
  ): Promise<NativeGroupResult> {
    const body = {
      prompts,
      params: sampling,
      ...(options.prefix ? { prefix: options.prefix } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
    };
    return this.queue.run(async (proc, id) => {
      const response = await proc.request(id, body, "generating");
      const parsed = GroupResponse.safeParse(response);
      if (!parsed.success || parsed.data.results.length !== prompts.length) {
        throw proc.responseError(`incomplete response ${JSON.stringify(response).slice(0, 200)}`);
      }
      return parsed.data;
    }, options.signal);
  }

  close(): Promise<void> {
    return this.queue.close();
  }

  /** Kills the generator process as a crash would (for tests of the restart path). */
  killForTesting(): void {
    this.queue.kill();
  }
}

/** Which path a model's plain generation takes; see {@link LlamaCppModelOptions.generation}. */
export type GenerationMode = NativeMode;

/** One model's choice between the native generator and the engine path (see {@link NativePath}). */
export function nativeGeneration(mode: GenerationMode, options: NativeGeneratorOptions): NativePath<NativeGenerator> {
  return new NativePath(mode, "iteralign-generate", () => NativeGenerator.start(options), `the native generator for ${options.modelFile}`);
}
