import type { LlamaContextSequence } from "node-llama-cpp";
import type { GenerateResult } from "../../spec/language-model.js";
import { LockstepBarrier } from "./lockstep-barrier.js";
import type { SequencePool } from "./sequence-pool.js";

/** Decodes one job on a sequence; `lockstep` is passed on to the decode loop. */
export type GroupJobRunner = (
  seq: LlamaContextSequence,
  lockstep: { barrier: LockstepBarrier; member: number },
) => Promise<GenerateResult>;

interface PendingJob {
  readonly run: GroupJobRunner;
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
 */
export class GroupScheduler {
  private collecting: PendingJob[] | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: SequencePool,
    private readonly groupSize: number,
  ) {}

  submit(run: GroupJobRunner): Promise<GenerateResult> {
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
      this.collecting.push({ run, resolve, reject });
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
    for (let start = 0; start < wave.length; start += this.groupSize) {
      await this.runGroup(wave.slice(start, start + this.groupSize));
    }
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
    const barrier = new LockstepBarrier(group.length);
    const settled = await Promise.allSettled(
      group.map((job, member) => job.run(sequences[member] as LlamaContextSequence, { barrier, member })),
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
}
