import { IterAlignError } from "../../spec/errors.js";
import type { LanguageModel } from "../../spec/language-model.js";
import { interceptCalls } from "./wrap.js";

/**
 * A FIFO counting semaphore. Share one limiter between every model that talks to the same provider
 * endpoint (e.g. the target and the judge served by one llama-server), so the limit holds for the
 * endpoint as a whole rather than per wrapper.
 */
export interface Limiter {
  /** Most tasks running at once. */
  readonly max: number;
  /** Tasks running now. */
  readonly active: number;
  /** Tasks waiting for a slot. */
  readonly pending: number;
  /**
   * Runs `task` once a slot is free, in arrival order. If `signal` aborts while the task is still
   * queued, rejects with ABORTED and gives up its place; a running task is not interrupted here (its
   * own signal handling does that).
   */
  run<T>(task: () => Promise<T>, signal?: AbortSignal, tokens?: number): Promise<T>;
}

interface Waiter {
  /** Called with the slot already counted as taken (handed over, so no one can barge in). */
  grant(): void;
}

/** Creates a {@link Limiter} allowing `max` concurrent tasks (a positive integer). */
export function createLimiter(max: number): Limiter {
  if (!Number.isInteger(max) || max < 1) {
    throw new IterAlignError("CONFIG_INVALID", `createLimiter: max must be a positive integer, got ${max}`);
  }
  let active = 0;
  // Array queue is fine: removal on abort is O(n) but queues stay small (tens of waiters).
  const queue: Waiter[] = [];

  const release = (): void => {
    const next = queue.shift();
    // Hand the slot straight to the next waiter instead of decrementing, so a newly arriving task
    // cannot take it first: that is what keeps the order FIFO.
    if (next) next.grant();
    else active--;
  };

  const acquire = (signal: AbortSignal | undefined): Promise<void> => {
    if (signal?.aborted) return Promise.reject(abortedWhileQueued(signal));
    if (active < max) {
      active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const index = queue.indexOf(waiter);
        if (index >= 0) queue.splice(index, 1);
        reject(abortedWhileQueued(signal as AbortSignal));
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      queue.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  };

  return {
    max,
    get active() {
      return active;
    },
    get pending() {
      return queue.length;
    },
    async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
      await acquire(signal);
      try {
        return await task();
      } finally {
        release();
      }
    },
  };
}

function abortedWhileQueued(signal: AbortSignal): IterAlignError {
  return new IterAlignError("ABORTED", "aborted while waiting for a concurrency slot", { cause: signal.reason });
}

/**
 * Runs every call of `model` through `limiter`, so at most `limiter.max` calls (across all models
 * sharing the limiter) are in flight at once.
 */
export function withConcurrencyLimit(model: LanguageModel, limiter: Limiter): LanguageModel {
  return interceptCalls(model, (call) => limiter.run(() => call.invoke(), call.signal, call.estimatedTokens));
}
