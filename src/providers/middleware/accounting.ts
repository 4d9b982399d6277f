import type { CallKind } from "../../spec/call-log.js";
import type { LanguageModel } from "../../spec/language-model.js";
import { interceptCalls, type CallResult } from "./wrap.js";

/** What a meter tallies by. */
export interface MeterKey {
  readonly provider: string;
  readonly modelId: string;
  readonly kind: CallKind;
}

/** Counters for one key, or for everything (`totals`). */
export interface MeterTally {
  /** Finished calls, successful or not. */
  readonly calls: number;
  /** Successful calls answered from the response cache (a subset of `calls`). */
  readonly cachedCalls: number;
  /** Calls that threw (a subset of `calls`). */
  readonly errors: number;
  /** Calls started and not yet finished. */
  readonly inFlight: number;
  /** Prompt tokens the engine processed; cached calls add none (no engine work was done). */
  readonly promptTokens: number;
  /** Tokens the engine generated; cached calls add none. */
  readonly completionTokens: number;
  /**
   * Dollars the answers cost to make, cached ones included (a cached answer carries the cost of the call that
   * made it): what the results are worth, the same in an uninterrupted and a resumed run.
   */
  readonly costUsd: number;
  /** Dollars this process paid: calls that reached a provider (cached answers are free). */
  readonly spentUsd: number;
  /** Sum of every call's latency (overlapping calls both count). */
  readonly latencyMs: number;
  /** Wall time during which at least one call was in flight (overlaps count once), incl. the running one. */
  readonly busyMs: number;
  /** `completionTokens` per second of `busyMs`: the aggregate generation throughput; 0 before any. */
  readonly tokensPerSecond: number;
}

export interface MeterEntry extends MeterKey, MeterTally {}

/** A point-in-time copy of a meter; entries sorted by provider, modelId, kind. */
export interface MeterSnapshot {
  readonly entries: readonly MeterEntry[];
  readonly totals: MeterTally;
}

/** How a call ended, as {@link Meter.begin}'s finisher takes it. */
export type CallOutcome =
  | { readonly ok: true; readonly cached: boolean; readonly promptTokens: number; readonly completionTokens: number; readonly costUsd?: number }
  | { readonly ok: false };

/** Tallies model calls; one meter may serve many models (it keys by provider, model and kind). */
export interface Meter {
  /** Marks a call as started; call the returned function exactly once when it ends. */
  begin(key: MeterKey): (outcome: CallOutcome) => void;
  snapshot(): MeterSnapshot;
  /**
   * Calls `listener` with a fresh snapshot whenever a call starts or ends (e.g. for a live tokens/s
   * display). Returns the unsubscribe function. A throwing listener is reported as a process warning
   * and never fails the model call.
   */
  subscribe(listener: (snapshot: MeterSnapshot) => void): () => void;
}

/** Options for {@link createMeter}. */
export interface MeterOptions {
  /** Monotonic milliseconds; injectable for tests. Default `performance.now`. */
  readonly clock?: () => number;
}

/** Mutable counters plus the bookkeeping needed to measure busy (wall) time. */
class Counter {
  calls = 0;
  cachedCalls = 0;
  errors = 0;
  inFlight = 0;
  promptTokens = 0;
  completionTokens = 0;
  costUsd = 0;
  spentUsd = 0;
  latencyMs = 0;
  busyMs = 0;
  busySince = 0;

  start(now: number): void {
    if (this.inFlight++ === 0) this.busySince = now;
  }

  finish(now: number, latencyMs: number, outcome: CallOutcome): void {
    this.calls++;
    this.latencyMs += latencyMs;
    if (--this.inFlight === 0) this.busyMs += now - this.busySince;
    if (!outcome.ok) {
      this.errors++;
      return;
    }
    this.costUsd += outcome.costUsd ?? 0;
    if (outcome.cached) {
      this.cachedCalls++;
    } else {
      this.promptTokens += outcome.promptTokens;
      this.completionTokens += outcome.completionTokens;
      this.spentUsd += outcome.costUsd ?? 0;
    }
  }

  tally(now: number): MeterTally {
    const busyMs = this.busyMs + (this.inFlight > 0 ? now - this.busySince : 0);
    return {
      calls: this.calls,
      cachedCalls: this.cachedCalls,
      errors: this.errors,
      inFlight: this.inFlight,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      costUsd: this.costUsd,
      spentUsd: this.spentUsd,
      latencyMs: this.latencyMs,
      busyMs,
      tokensPerSecond: busyMs > 0 ? (this.completionTokens * 1000) / busyMs : 0,
    };
  }
}

/** Creates an empty {@link Meter}. */
export function createMeter(options: MeterOptions = {}): Meter {
  const clock = options.clock ?? (() => performance.now());
  const byKey = new Map<string, { key: MeterKey; counter: Counter }>();
  const total = new Counter();
  const listeners = new Set<(snapshot: MeterSnapshot) => void>();

  const snapshot = (): MeterSnapshot => {
    const now = clock();
    const entries = [...byKey.values()]
      .sort((a, b) => compareKeys(a.key, b.key))
      .map(({ key, counter }) => ({ provider: key.provider, modelId: key.modelId, kind: key.kind, ...counter.tally(now) }));
    return { entries, totals: total.tally(now) };
  };

  const notify = (): void => {
    if (listeners.size === 0) return;
    const snap = snapshot();
    for (const listener of listeners) {
      try {
        listener(snap);
      } catch (error) {
        // A broken progress display must not fail (or retry) a model call; surface it instead.
        process.emitWarning(`iteralign meter listener threw: ${String(error)}`);
      }
    }
  };

  return {
    begin(key) {
      const id = JSON.stringify([key.provider, key.modelId, key.kind]);
      let slot = byKey.get(id);
      if (!slot) {
        slot = { key: { provider: key.provider, modelId: key.modelId, kind: key.kind }, counter: new Counter() };
        byKey.set(id, slot);
      }
      const { counter } = slot;
      const startedAt = clock();
      counter.start(startedAt);
      total.start(startedAt);
      notify();
      let done = false;
      return (outcome) => {
        if (done) return;
        done = true;
        const now = clock();
        counter.finish(now, now - startedAt, outcome);
        total.finish(now, now - startedAt, outcome);
        notify();
      };
    },
    snapshot,
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}

function compareKeys(a: MeterKey, b: MeterKey): number {
  return cmp(a.provider, b.provider) || cmp(a.modelId, b.modelId) || cmp(a.kind, b.kind);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Reads the cached flag and token usage off any method's result (embed results carry neither). */
function outcomeOf(result: CallResult): CallOutcome {
  const cached = "cached" in result && result.cached === true;
  const usage = "usage" in result ? result.usage : undefined;
  const costUsd = "costUsd" in result && typeof result.costUsd === "number" ? result.costUsd : 0;
  return { ok: true, cached, promptTokens: usage?.promptTokens ?? 0, completionTokens: usage?.completionTokens ?? 0, costUsd };
}

/**
 * Tallies every call of `model` in `meter`. Place it outermost (see `applyMiddleware`) so it sees
 * cache hits (`cached: true`) and the latency callers actually experience, queueing and retries included.
 */
export function withAccounting(model: LanguageModel, meter: Meter): LanguageModel {
  return interceptCalls(model, async (call) => {
    const finish = meter.begin({ provider: model.provider, modelId: model.modelId, kind: call.kind });
    try {
      const result = await call.invoke();
      finish(outcomeOf(result));
      return result;
    } catch (error) {
      finish({ ok: false });
      throw error;
    }
  });
}
