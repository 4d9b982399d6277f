import { accessSync, constants, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { GenerateResult } from "../../spec/language-model.js";
import { LockstepBarrier } from "./lockstep-barrier.js";
import type { NativeGenerator, NativeSampling } from "./native-generator.js";
import type { SequencePool } from "./sequence-pool.js";

/** What a job is told when it starts on its sequence. */
export interface GroupJobContext {
  readonly barrier: LockstepBarrier;
  readonly member: number;
  /** How many of the job's prompt tokens are already in the sequence (the group's shared prefix). */
  readonly prefilled: number;
}

/** Decodes one job on a sequence; `lockstep` is passed on to the decode loop. */
export type GroupJobRunner = (seq: LlamaContextSequence, context: GroupJobContext) => Promise<GenerateResult>;

/** Shared-prefix reuse within a decode group. */
export interface PrefixReuseOptions {
  /** Shortest common prefix worth sharing, in tokens. */
  readonly minTokens: number;
  /** Where the prefix's KV state passes from one sequence to the others (default: the OS temp directory). */
  readonly dir?: string;
}

/** Prompt tokens of the decode groups: as sent, and as evaluated (a shared prefix counts once per group). */
export interface PromptEvaluationStats {
  promptTokens: number;
  evaluatedTokens: number;
  /** Groups that shared a prefix, and the prefix tokens they did not evaluate again. */
  sharedGroups: number;
  reusedTokens: number;
}

/** A job the native generator may decode instead (see {@link GroupScheduler}'s `native` option). */
export interface NativeJobSpec {
  readonly sampling: NativeSampling;
  /** Makes the job's result from the generator's answer; `cachedPromptTokens`: prompt tokens it did not evaluate. */
  readonly finish: (answer: { readonly tokens: number[]; readonly finish: "stop" | "length" }, cachedPromptTokens: number) => GenerateResult;
}

/** Where the scheduler finds the native generator, and the thread budget each native group runs with. */
export interface NativeGroups {
  /** The running generator, or undefined when the engine path takes the jobs (auto mode after a failed start). */
  readonly generator: () => Promise<NativeGenerator | undefined>;
  readonly threads: () => number | undefined;
}

/** Time the native generator spent decoding and sampling, over every native group. */
export interface NativeGenerationStats {
  groups: number;
  decodeMs: number;
  sampleMs: number;
}

interface PendingJob {
  readonly tokens: readonly Token[];
  readonly run: GroupJobRunner;
  readonly native: NativeJobSpec | undefined;
  readonly resolve: (r: GenerateResult) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * Turns concurrent generation calls into fixed, reproducible decode groups.
 *
 * Calls that arrive in the same event-loop turn (a stage starting a whole batch with Promise.all) form a wave;
 * a wave is cut, in arrival order, into groups of at most `groupSize` (the context's sequences); groups run one
 * after another, each decoded in lockstep, and all of a group's results are delivered together when its last
 * member finishes. So the same batch always decodes in the same groups with the same batch compositions, and a
 * response cache sees a group's answers appear at once: a run killed and resumed re-decodes exactly the groups
 * that had not finished, in the same composition as an uninterrupted run.
 *
 * Jobs submitted with a native spec run on the native generator (`iteralign-generate`) when one is given: a wave's
 * native jobs are cut into groups the same way, after its engine jobs, and each group is one generator request.
 */
export class GroupScheduler {
  private collecting: PendingJob[] | undefined;
  private queue: Promise<void> = Promise.resolve();
  private files = 0;
  readonly stats: PromptEvaluationStats = { promptTokens: 0, evaluatedTokens: 0, sharedGroups: 0, reusedTokens: 0 };
  readonly nativeStats: NativeGenerationStats = { groups: 0, decodeMs: 0, sampleMs: 0 };

  constructor(
    private readonly pool: SequencePool,
    private readonly groupSize: number,
    private readonly prefixReuse?: PrefixReuseOptions,
    private readonly native?: NativeGroups,
  ) {}

  /**
   * Queues a job whose prompt is `tokens` (the scheduler shares a group's common prefix between its sequences).
   * With `native`, the native generator decodes it when the scheduler has one; `run` otherwise.
   */
  submit(tokens: readonly Token[], run: GroupJobRunner, native?: NativeJobSpec): Promise<GenerateResult> {
    return new Promise<GenerateResult>((resolve, reject) => {
      if (!this.collecting) {
        const wave: PendingJob[] = [];
        this.collecting = wave;
        // Close the wave once the current turn's synchronous burst and its microtasks have all arrived.
        setImmediate(() => {
          this.collecting = undefined;
          this.queue = this.queue.then(() => this.runWave(wave));
        });
      }
      this.collecting.push({ tokens, run, native, resolve, reject });
    });
  }

  /**
   * Runs `task` alone on the context: after every wave queued before it, and before any queued after it. For work
   * that must not share decode batches with other sequences (engine-path scoring).
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task);
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private async runWave(wave: readonly PendingJob[]): Promise<void> {
    let generator: NativeGenerator | undefined;
    if (this.native && wave.some((job) => job.native)) {
      try {
        generator = await this.native.generator();
      } catch (err) {
        // `native` mode and the generator cannot start: the jobs that needed it fail with why.
        for (const job of wave) if (job.native) job.reject(err);
        wave = wave.filter((job) => !job.native);
      }
    }
    const onEngine = generator ? wave.filter((job) => !job.native) : wave;
    for (let start = 0; start < onEngine.length; start += this.groupSize) {
      await this.runGroup(onEngine.slice(start, start + this.groupSize));
    }
    if (!generator) return;
    const onNative = wave.filter((job) => job.native);
    const size = Math.min(this.groupSize, generator.sequences);
    for (let start = 0; start < onNative.length; start += size) {
      await this.runNativeGroup(generator, onNative.slice(start, start + size));
    }
  }

  /** One group as one generator request: the shared prefix is evaluated once and copied inside the generator. */
  private async runNativeGroup(generator: NativeGenerator, group: readonly PendingJob[]): Promise<void> {
    const prompts = group.map((job) => job.tokens);
    const prefix = this.prefixLength(prompts);
    try {
      const r = await generator.generateGroup(
        prompts,
        group.map((job) => (job.native as NativeJobSpec).sampling),
        { prefix, ...(this.native?.threads() !== undefined ? { threads: this.native.threads() } : {}) },
      );
      this.stats.promptTokens += r.promptTokens;
      this.stats.evaluatedTokens += r.evaluatedTokens;
      if (prefix > 0) {
        this.stats.sharedGroups++;
        this.stats.reusedTokens += prefix * (group.length - 1);
      }
      this.nativeStats.groups++;
      this.nativeStats.decodeMs += r.decodeMs;
      this.nativeStats.sampleMs += r.sampleMs;
      group.forEach((job, i) => {
        try {
          job.resolve((job.native as NativeJobSpec).finish(r.results[i] as { tokens: number[]; finish: "stop" | "length" }, i === 0 ? 0 : prefix));
        } catch (err) {
          job.reject(err);
        }
      });
    } catch (err) {
      for (const job of group) job.reject(err);
    }
  }

  /** The common prefix a group shares, when reuse is on and it is long enough; 0 otherwise. */
  private prefixLength(prompts: readonly (readonly Token[])[]): number {
    if (!this.prefixReuse || prompts.length < 2) return 0;
    // Each member keeps at least one token of its own to evaluate: its first answer token comes from its logits.
    const length = Math.min(commonPrefixLength(prompts), Math.min(...prompts.map((p) => p.length)) - 1);
    return length >= this.prefixReuse.minTokens ? length : 0;
  }

  private async runGroup(group: readonly PendingJob[]): Promise<void> {
    const sequences: LlamaContextSequence[] = [];
    try {
      for (let i = 0; i < group.length; i++) sequences.push(await this.pool.acquire());
    } catch (err) {
      for (const seq of sequences) this.pool.release(seq);
      for (const job of group) job.reject(err);
      return;
    }
    const prefilled = await this.sharePrefix(group, sequences);
    const promptTokens = group.reduce((sum, job) => sum + job.tokens.length, 0);
    this.stats.promptTokens += promptTokens;
    this.stats.evaluatedTokens += promptTokens - prefilled * Math.max(0, group.length - 1);
    const barrier = new LockstepBarrier(group.length);
    const settled = await Promise.allSettled(
      group.map((job, member) => job.run(sequences[member] as LlamaContextSequence, { barrier, member, prefilled })),
    );
    // Leave the KV cache empty, so the next group's cells are laid out exactly as in any other run.
    await Promise.allSettled(sequences.map((seq) => seq.clearHistory()));
    for (const seq of sequences) this.pool.release(seq);
    settled.forEach((outcome, i) => {
      const job = group[i] as PendingJob;
      if (outcome.status === "fulfilled") job.resolve(outcome.value);
      else job.reject(outcome.reason);
    });
  }

  /**
   * Evaluates the group's common prompt prefix once, on the first sequence, and gives the others its KV state
   * (node-llama-cpp 3.21 cannot copy a sequence's cache in memory: the state passes through a file of the prefix's
   * K and V, a few KB per token for small models). Returns the tokens every member has in its sequence already;
   * 0 when the prefix is too short to be worth it, or when sharing fails (the members then evaluate everything).
   */
  private async sharePrefix(group: readonly PendingJob[], sequences: readonly LlamaContextSequence[]): Promise<number> {
    const length = this.prefixLength(group.map((j) => j.tokens));
    if (length === 0 || !this.prefixReuse) return 0;
    const prefix = (group[0] as PendingJob).tokens.slice(0, length);
    const dir = this.prefixReuse.dir ?? prefixStateDir();
    const file = path.join(dir, `iteralign-prefix-${process.pid}-${++this.files}.kv`);
    const [first, ...rest] = sequences as [LlamaContextSequence, ...LlamaContextSequence[]];
    try {
      await first.evaluateWithoutGeneratingNewTokens(prefix);
      await first.saveStateToFile(file);
      for (const seq of rest) await seq.loadStateFromFile(file, { acceptRisk: true });
      if (rest.some((seq) => seq.nextTokenIndex !== length)) throw new Error("a sequence did not load the whole prefix");
      this.stats.sharedGroups++;
      this.stats.reusedTokens += length * rest.length;
      return length;
    } catch {
      await Promise.allSettled(sequences.map((seq) => seq.clearHistory()));
      return 0;
    } finally {
      rmSync(file, { force: true });
    }
  }
}

let stateDir: string | undefined;

/**
 * Where prefix states pass between sequences: shared memory (`/dev/shm`) where there is one, so the transfer never
 * touches a disk, else the OS temp directory. The first call also removes state files left by processes that were
 * killed between writing and removing one.
 */
export function prefixStateDir(): string {
  if (stateDir !== undefined) return stateDir;
  let dir = tmpdir();
  try {
    accessSync("/dev/shm", constants.W_OK);
    dir = "/dev/shm";
  } catch {
    // No shared memory file system (macOS, Windows): the temp directory.
  }
  removeStaleStates(dir);
  stateDir = dir;
  return dir;
}

/** Removes `iteralign-prefix-<pid>-<n>.kv` files of processes that no longer run. */
export function removeStaleStates(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^iteralign-prefix-(\d+)-\d+\.kv$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isRunning(pid)) continue;
    rmSync(path.join(dir, name), { force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Length of the longest prefix all token lists share. */
export function commonPrefixLength<T>(lists: readonly (readonly T[])[]): number {
  const [first, ...rest] = lists;
  if (!first) return 0;
  let n = 0;
  while (n < first.length && rest.every((l) => l[n] === first[n])) n++;
  return n;
}
