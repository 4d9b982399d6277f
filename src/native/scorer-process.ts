/**
 * The process side of the native scorer (`native/iteralign-scorer`): spawning, the JSON-lines protocol, the
 * stderr tail kept for error messages, and the exit hook that keeps scorer processes from outliving Node.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import type { Socket } from "node:net";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import type { ContinuationScore } from "../spec/language-model.js";

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

const ReadyLine = z.object({
  ready: z.literal(true),
  nVocab: z.number().int(),
  nCtx: z.number().int(),
  nSeq: z.number().int(),
  nBatch: z.number().int(),
  /** Contexts are decoded in chunks starting at multiples of this many tokens; whole chunks are reused. */
  chunk: z.number().int(),
});

const ResponseLine = z.object({
  id: z.number().nullable(),
  scores: z.array(z.object({ logprob: z.number(), tokenCount: z.number().int(), isGreedy: z.boolean() })).optional(),
  promptTokens: z.number().int().optional(),
  reusedTokens: z.number().int().optional(),
  readMs: z.number().optional(),
  error: z.string().optional(),
  kind: z.string().optional(),
});

/** The scorer's startup line: the model's vocabulary and the context it created. */
export type ScorerReady = z.infer<typeof ReadyLine>;

const STDERR_LINES = 20;

/** Live scorer processes, killed when this process exits so none outlives it. */
const live = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers run synchronously; kill() only sends a signal, which is all that can be done there. When
  // Node dies without running them (SIGKILL, an unhandled signal), the scorer sees EOF on stdin and exits.
  process.once("exit", () => {
    for (const child of live) child.kill("SIGKILL");
  });
}

/** Starts the scorer binary; the process is killed when this Node process exits. */
export function spawnScorerProcess(binary: string, args: readonly string[], modelFile: string): ScorerProcess {
  installExitHook();
  const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  return new ScorerProcess(child, modelFile);
}

interface Pending {
  readonly id: number;
  readonly resolve: (r: NativeScoreResult) => void;
  readonly reject: (e: Error) => void;
}

/** One running scorer process: its line protocol, its stderr tail and its one request in flight. */
export class ScorerProcess {
  readonly stderrTail: string[] = [];
  readonly ready: Promise<ScorerReady>;
  readonly exited: Promise<void>;
  private isDead = false;
  private exitText = "still running";
  private pending: Pending | undefined;
  private stdoutBuffer = "";
  private settleReady: ((r: ScorerReady) => void) | undefined;
  private failReady: ((e: Error) => void) | undefined;

  constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly modelFile: string,
  ) {
    this.ready = new Promise<ScorerReady>((resolve, reject) => {
      this.settleReady = resolve;
      this.failReady = reject;
    });
    // The caller attaches its handlers later (after a timeout race); keep an early failure from being unhandled.
    this.ready.catch(() => undefined);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => this.onStdout(chunk));
    child.stderr.on("data", (chunk: string) => this.remember(chunk));
    // A write to a process that just died fails with EPIPE; the exit handler below reports it.
    child.stdin.on("error", () => undefined);
    this.exited = new Promise((resolve) => {
      child.on("error", (err) => {
        this.remember(`cannot run the scorer: ${err.message}`);
        this.onExit(null, null);
        resolve();
      });
      // 'close', not 'exit': it comes after stdout is drained, so an answer written just before exiting counts.
      child.on("close", (code, signal) => {
        this.onExit(code, signal);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the process has exited (or never started). */
  get dead(): boolean {
    return this.isDead;
  }

  /** Sends one request; only one may be in flight (the NativeScorer queue guarantees it). */
  send(
    id: number,
    context: readonly number[],
    continuations: readonly (readonly number[])[],
    options: ScoreOptions = {},
  ): Promise<NativeScoreResult> {
    return new Promise((resolve, reject) => {
      if (this.dead) {
        reject(this.deathError("before the request was sent"));
        return;
      }
      this.pending = { id, resolve, reject };
      this.setRef(true);
      this.child.stdin.write(`${JSON.stringify({ id, context, continuations, ...(options.fresh ? { fresh: true } : {}) })}\n`);
    });
  }

  /** Closes stdin (the scorer exits on EOF); kills it if it has not exited within `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.dead) return;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the process at once (tests use it to simulate a crash). */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }

  deathError(when: string): IterAlignError {
    const tail = this.stderrTail.length > 0 ? `; last stderr lines:\n${this.stderrTail.join("\n")}` : "";
    return new IterAlignError(
      "GENERATION_FAILED",
      `the native scorer for ${this.modelFile} exited ${when} (${this.exitText})${tail}`,
      { retryable: true, details: { modelFile: this.modelFile } },
    );
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.isDead) return;
    this.isDead = true;
    live.delete(this.child);
    this.exitText = signal ? `signal ${signal}` : code === null ? "failed to start" : `status ${code}`;
    this.failReady?.(this.deathError("while loading the model"));
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(this.deathError("while scoring"));
  }

  private remember(text: string): void {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
    }
  }

  private onStdout(chunk: string): void {
    this.stdoutBuffer += chunk;
    for (let nl = this.stdoutBuffer.indexOf("\n"); nl >= 0; nl = this.stdoutBuffer.indexOf("\n")) {
      const line = this.stdoutBuffer.slice(0, nl).trim();
      this.stdoutBuffer = this.stdoutBuffer.slice(nl + 1);
      if (line !== "") this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // Not protocol: something in llama.cpp printed to stdout. Keep it for diagnostics, do not fail.
      this.remember(`stdout: ${line}`);
      return;
    }
    const ready = ReadyLine.safeParse(value);
    if (ready.success) {
      this.settleReady?.(ready.data);
      this.setRef(false);
      return;
    }
    const response = ResponseLine.safeParse(value);
    const pending = this.pending;
    // One request in flight: a response with a null id (a request the scorer could not parse) is that one's.
    if (!response.success || !pending || (response.data.id !== null && response.data.id !== pending.id)) {
      this.remember(`unexpected scorer output: ${line.slice(0, 200)}`);
      return;
    }
    this.pending = undefined;
    this.setRef(false);
    const r = response.data;
    if (r.error !== undefined) {
      const code = r.kind === "input" ? "USAGE" : "GENERATION_FAILED";
      pending.reject(new IterAlignError(code, `native scorer (${this.modelFile}): ${r.error}`, { details: { kind: r.kind } }));
    } else if (r.scores && r.promptTokens !== undefined) {
      pending.resolve({
        scores: r.scores,
        promptTokens: r.promptTokens,
        ...(r.reusedTokens !== undefined ? { reusedTokens: r.reusedTokens } : {}),
        ...(r.readMs !== undefined ? { readMs: r.readMs } : {}),
      });
    } else {
      pending.reject(new IterAlignError("GENERATION_FAILED", `native scorer (${this.modelFile}): incomplete response ${line.slice(0, 200)}`));
    }
  }

  /**
   * Holds the event loop only while the scorer works for us, so an idle scorer never keeps Node alive; the
   * exit hook kills it when the program ends without close().
   */
  private setRef(busy: boolean): void {
    const handles = [this.child.stdout, this.child.stderr, this.child.stdin] as unknown as Socket[];
    if (busy) {
      this.child.ref();
      for (const h of handles) h.ref();
    } else {
      this.child.unref();
      for (const h of handles) h.unref();
    }
  }
}

