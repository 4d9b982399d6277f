import type { LanguageModel } from "../../spec/language-model.js";
import { withAccounting, type Meter } from "./accounting.js";
import { withCache, type CacheOptions } from "./cache.js";
import { withConcurrencyLimit, type Limiter } from "./concurrency.js";
import { withPricing, type PricingOptions } from "./pricing.js";
import { withRetry, type RetryOptions } from "./retry.js";
import { withTimeout, type TimeoutOptions } from "./timeout.js";

/** Which middleware {@link applyMiddleware} adds; each one left out is skipped. */
export interface MiddlewareOptions {
  readonly cache?: CacheOptions;
  readonly retry?: RetryOptions;
  /** Share one limiter between all models of the same provider endpoint. */
  readonly concurrency?: Limiter;
  /**
   * Put the limiter under retry, so each attempt (a retry included) takes a slot and the endpoint's budget
   * again: for limits that pace by the server's rate-limit headers, a retry is a request like any other.
   */
  readonly limitEachAttempt?: boolean;
  readonly timeout?: TimeoutOptions;
  readonly meter?: Meter;
  /** Adds each call's cost at this price. */
  readonly pricing?: PricingOptions;
}

/**
 * Wraps `model` in the standard stack, from the outside in:
 *
 *   accounting → cache → concurrency limit → retry → timeout → pricing → model
 *
 * Why this order:
 * - Accounting is outermost so it counts every call, cache hits included (it reads `cached: true`),
 *   with the latency the caller really sees (queueing and retries included).
 * - The cache sits above the concurrency limit so a hit returns at once instead of waiting for a slot
 *   that only engine work needs; it sits above retry so only the final outcome is recorded and an
 *   error (even after retries) is never cached.
 * - A plain concurrency limit sits above retry so a call keeps its slot through its backoff: when the
 *   endpoint is overloaded (429s) retrying callers do not let queued work pile on more load, and a
 *   retried call does not lose its place in the FIFO queue. An adaptive limit (`limitEachAttempt`) sits
 *   below retry instead: it paces by the server's budget, and a retry spends that budget like any request.
 * - The timeout is innermost but for pricing, so each attempt gets its own full time limit (a TIMEOUT is
 *   retryable), and time spent queued or backing off never eats into an attempt's budget.
 * - Pricing sits right on the model, below the cache, so the cost is stored with each answer.
 */
export function applyMiddleware(model: LanguageModel, options: MiddlewareOptions): LanguageModel {
  let wrapped = model;
  if (options.pricing) wrapped = withPricing(wrapped, options.pricing);
  if (options.timeout) wrapped = withTimeout(wrapped, options.timeout);
  if (options.concurrency && options.limitEachAttempt) wrapped = withConcurrencyLimit(wrapped, options.concurrency);
  if (options.retry) wrapped = withRetry(wrapped, options.retry);
  if (options.concurrency && !options.limitEachAttempt) wrapped = withConcurrencyLimit(wrapped, options.concurrency);
  if (options.cache) wrapped = withCache(wrapped, options.cache);
  if (options.meter) wrapped = withAccounting(wrapped, options.meter);
  return wrapped;
}
