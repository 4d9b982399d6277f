import { IterAlignError } from "../../spec/errors.js";
import type { LanguageModel } from "../../spec/language-model.js";
import { interceptCalls } from "./wrap.js";

/** Options for {@link withRetry}. */
export interface RetryOptions {
  /** Retries after the first attempt (so at most `maxRetries + 1` attempts). Default 3. */
  readonly maxRetries?: number;
  /** Backoff cap for the first retry; doubles for each later one. Default 500 ms. */
  readonly baseDelayMs?: number;
  /** Upper bound of any single backoff. Default 20 000 ms. */
  readonly maxDelayMs?: number;
  /**
   * Upper bound of a wait the server asked for (`Retry-After`, `retry-after-ms`); usually the call's timeout.
   * Default 600 000 ms.
   */
  readonly maxRetryAfterMs?: number;
  /** Uniform random in [0, 1); injectable so tests can pin the jitter. Default `Math.random`. */
  readonly random?: () => number;
  /** Waits `ms`, rejecting early when `signal` aborts; injectable for tests. Default: a timer. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Backoff before retry number `retry` (0 for the first retry): "full jitter", a uniform draw in
 * [0, min(maxDelayMs, baseDelayMs * 2^retry)). Full jitter spreads clients that failed together (a
 * 429 burst) across the whole window instead of letting them retry in lockstep.
 */
export function backoffDelayMs(
  retry: number,
  options: { baseDelayMs: number; maxDelayMs: number; random: () => number },
): number {
  const cap = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** retry);
  return Math.floor(options.random() * cap);
}

/**
 * The wait before a retry: what the server asked for (`details.retryAfterMs`, from `Retry-After` or
 * `retry-after-ms`), capped at `maxRetryAfterMs`, plus up to 10% (at most 1 s) of jitter so clients told the
 * same time do not come back in the same millisecond; else the exponential backoff.
 */
export function retryDelayMs(
  error: IterAlignError,
  retry: number,
  options: { baseDelayMs: number; maxDelayMs: number; maxRetryAfterMs: number; random: () => number },
): number {
  const asked = error.details.retryAfterMs;
  if (typeof asked === "number" && Number.isFinite(asked) && asked >= 0) {
    const wait = Math.min(asked, options.maxRetryAfterMs);
    return Math.floor(wait + options.random() * Math.min(1000, wait * 0.1));
  }
  return backoffDelayMs(retry, options);
}

/**
 * Retries calls that fail with an {@link IterAlignError} whose `retryable` is true (network blips,
 * 429, 5xx, malformed responses, per-attempt timeouts), with exponential backoff and full jitter, or after
 * the time the server asked for (see {@link retryDelayMs}).
 *
 * - Any other error is rethrown unchanged at once (an `OutputInvalidError` keeps its class and raw text).
 * - Once the caller's signal is aborted nothing is retried, and the backoff sleep ends early.
 * - When retries run out, the error thrown has the last error's code, `details.attempts`, the last
 *   error as `cause`, and `retryable: false`, so a second retry layer above does not multiply attempts.
 *
 * Note: a streaming `generate` that fails midway may already have passed text to `onText`; the retry
 * streams again from the start.
 */
export function withRetry(model: LanguageModel, options: RetryOptions = {}): LanguageModel {
  const maxRetries = options.maxRetries ?? 3;
  const baseDelayMs = options.baseDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 20_000;
  const maxRetryAfterMs = options.maxRetryAfterMs ?? 600_000;
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? abortableSleep;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new IterAlignError("CONFIG_INVALID", `withRetry: maxRetries must be a non-negative integer, got ${maxRetries}`);
  }
  if (!(baseDelayMs >= 0) || !(maxDelayMs >= 0)) {
    throw new IterAlignError("CONFIG_INVALID", "withRetry: baseDelayMs and maxDelayMs must be >= 0");
  }

  return interceptCalls(model, async (call) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call.invoke();
      } catch (error) {
        if (!(error instanceof IterAlignError) || !error.retryable || call.signal?.aborted) throw error;
        if (attempt > maxRetries) {
          throw new IterAlignError(
            error.code,
            `${model.provider} model '${model.modelId}' ${call.kind} failed after ${attempt} attempts: ${error.message}`,
            { cause: error, details: { ...error.details, attempts: attempt }, retryable: false },
          );
        }
        await sleep(retryDelayMs(error, attempt - 1, { baseDelayMs, maxDelayMs, maxRetryAfterMs, random }), call.signal);
        // The sleep may have resolved just as the caller aborted; report the abort, not another attempt.
        if (call.signal?.aborted) throw abortedError(call.signal);
      }
    }
  });
}

function abortedError(signal: AbortSignal): IterAlignError {
  return new IterAlignError("ABORTED", "aborted while waiting to retry", { cause: signal.reason });
}

/** Default sleep: a timer that rejects with ABORTED as soon as `signal` aborts. */
function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortedError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
