import { IterAlignError } from "../../spec/errors.js";
import type { LanguageModel } from "../../spec/language-model.js";
import { interceptCalls } from "./wrap.js";

/** Options for {@link withTimeout}. */
export interface TimeoutOptions {
  /** Limit for one call, in ms: a positive number up to 2^31 - 1 (Node's timer limit). */
  readonly timeoutMs: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Gives every call at most `timeoutMs`. The inner model gets a signal that aborts on the caller's
 * abort or on expiry, so engines stop decoding; on expiry the call rejects with TIMEOUT
 * (`retryable: true`) at once, even if the inner model ignores its signal and keeps running.
 */
export function withTimeout(model: LanguageModel, options: TimeoutOptions): LanguageModel {
  const { timeoutMs } = options;
  // Node fires over-large or non-finite timers immediately, which would turn "no real limit" into
  // "fail everything"; refuse such values instead.
  if (!(timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS)) {
    throw new IterAlignError("CONFIG_INVALID", `withTimeout: timeoutMs must be in (0, ${MAX_TIMER_MS}], got ${timeoutMs}`);
  }
  return interceptCalls(model, async (call) => {
    // Combined by hand rather than with AbortSignal.any: a run-wide caller signal outlives thousands of
    // calls, and removing our listener in `finally` guarantees nothing accumulates on it.
    const controller = new AbortController();
    const caller = call.signal;
    const onCallerAbort = (): void => controller.abort(caller?.reason);
    if (caller?.aborted) onCallerAbort();
    else caller?.addEventListener("abort", onCallerAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new IterAlignError(
          "TIMEOUT",
          `${model.provider} model '${model.modelId}' ${call.kind} timed out after ${timeoutMs} ms`,
          { retryable: true, details: { provider: model.provider, modelId: model.modelId, kind: call.kind, timeoutMs } },
        );
        // Reject before aborting, so the inner call's own ABORTED rejection loses the race.
        reject(error);
        controller.abort(error);
      }, timeoutMs);
    });
    try {
      // race() also subscribes to the inner promise, so its late rejection after a timeout is handled.
      return await Promise.race([call.invoke(controller.signal), expired]);
    } finally {
      clearTimeout(timer);
      caller?.removeEventListener("abort", onCallerAbort);
    }
  });
}
