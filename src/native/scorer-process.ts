/**
 * The process side of the native scorer (`native/iteralign-scorer`): its ready line and its scoring request on the
 * JSON-lines protocol shared with iteralign's other native programs (see json-lines-process.ts).
 */
import { z } from "zod";
import type { ContinuationScore } from "../spec/language-model.js";
import { NativeReadyLine, startJsonLinesProcess, type JsonLinesProcess } from "./json-lines-process.js";

/** Scores of one request, and the tokens decoded to compute them. */
export interface NativeScoreResult {
  readonly scores: ContinuationScore[];
  /** Context tokens plus every continuation token but its last (the number of tokens evaluated). */
  readonly promptTokens: number;
  /** Leading context tokens whose keys and values were kept from the previous request instead of evaluated. */
  readonly reusedTokens?: number;
  /** Milliseconds the scorer spent computing log-softmax from the logits (not decoding); for benchmarks. */
  readonly readMs?: number;
}

/** Per-request options of the scorer protocol. */
export interface ScoreOptions {
  /** Evaluate the whole context from empty memory, reusing nothing from the previous request. */
  readonly fresh?: boolean;
}

const ReadyLine = NativeReadyLine.extend({
  /** Contexts are decoded in chunks starting at multiples of this many tokens; whole chunks are reused. */
  chunk: z.number().int(),
});

const ScoreResponse = z.object({
  scores: z.array(z.object({ logprob: z.number(), tokenCount: z.number().int(), isGreedy: z.boolean() })),
  promptTokens: z.number().int(),
  reusedTokens: z.number().int().optional(),
  readMs: z.number().optional(),
});

/** The scorer's startup line: the model's vocabulary and the context it created. */
export type ScorerReady = z.infer<typeof ReadyLine>;

/** One running scorer process. */
export class ScorerProcess {
  constructor(readonly proc: JsonLinesProcess<ScorerReady>) {}

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get dead(): boolean {
    return this.proc.dead;
  }

  get stderrTail(): readonly string[] {
    return this.proc.stderrTail;
  }

  /** Scores `continuations` after `context`; one request at a time (the NativeScorer queue guarantees it). */
  async send(
    id: number,
    context: readonly number[],
    continuations: readonly (readonly number[])[],
    options: ScoreOptions = {},
  ): Promise<NativeScoreResult> {
    const response = await this.proc.request(id, { context, continuations, ...(options.fresh ? { fresh: true } : {}) }, "scoring");
    const parsed = ScoreResponse.safeParse(response);
    if (!parsed.success) throw this.proc.responseError(`incomplete response ${JSON.stringify(response).slice(0, 200)}`);
    const r = parsed.data;
    return {
      scores: r.scores,
      promptTokens: r.promptTokens,
      ...(r.reusedTokens !== undefined ? { reusedTokens: r.reusedTokens } : {}),
      ...(r.readMs !== undefined ? { readMs: r.readMs } : {}),
    };
  }

  stop(graceMs?: number): Promise<void> {
    return this.proc.stop(graceMs);
  }

  kill(signal?: NodeJS.Signals): void {
    this.proc.kill(signal);
  }
}

/** Starts the scorer binary and waits until its model is loaded (MODEL_LOAD_FAILED otherwise). */
export async function startScorerProcess(
  binary: string,
  args: readonly string[],
  modelFile: string,
  timeoutMs: number,
): Promise<{ proc: ScorerProcess; info: ScorerReady }> {
  const { proc, info } = await startJsonLinesProcess(binary, args, { program: "native scorer", modelFile }, ReadyLine, timeoutMs);
  return { proc: new ScorerProcess(proc), info };
}
