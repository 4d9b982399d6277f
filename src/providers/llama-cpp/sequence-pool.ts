import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";

/**
 * Hands out the sequences of one context. Sequences evaluated at the same time are decoded together
 * in one batch by node-llama-cpp, which is where parallel throughput comes from.
 */
export class SequencePool {
  private readonly free: LlamaContextSequence[] = [];
  private readonly waiters: Array<{ resolve: (s: LlamaContextSequence) => void; reject: (e: unknown) => void }> = [];

  private readonly order = new Map<LlamaContextSequence, number>();

  constructor(context: LlamaContext, size: number) {
    for (let i = 0; i < size; i++) {
      const seq = context.getSequence();
      this.order.set(seq, i);
      this.free.push(seq);
    }
  }

  get size(): number {
    return this.free.length;
  }

  /** Waits for a free sequence; its history is cleared so every call starts from the same state. */
  async acquire(signal?: AbortSignal): Promise<LlamaContextSequence> {
    const seq =
      this.free.shift() ??
      (await new Promise<LlamaContextSequence>((resolve, reject) => {
        const waiter = { resolve, reject };
        this.waiters.push(waiter);
        signal?.addEventListener(
          "abort",
          () => {
            const i = this.waiters.indexOf(waiter);
            if (i >= 0) this.waiters.splice(i, 1);
            reject(new IterAlignError("ABORTED", "aborted while waiting for a free sequence"));
          },
          { once: true },
        );
      }));
    try {
      await seq.clearHistory();
    } catch (err) {
      this.release(seq);
      throw err;
    }
    return seq;
  }

  release(seq: LlamaContextSequence): void {
    const next = this.waiters.shift();
    if (next) {
      next.resolve(seq);
      return;
    }
    // Hand out sequences lowest first, so the same work lands on the same sequences every run.
    this.free.push(seq);
    this.free.sort((a, b) => (this.order.get(a) ?? 0) - (this.order.get(b) ?? 0));
  }

  /** Runs `fn` with a sequence and always gives it back. */
  async with<T>(fn: (seq: LlamaContextSequence) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const seq = await this.acquire(signal);
    try {
      return await fn(seq);
    } finally {
      this.release(seq);
    }
  }
}
