import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import type { StageItem } from "../stages/stage-item.js";
import type { StageCheckpoint } from "./checkpoint.js";
import type { RunContext } from "./run-context.js";
import { tallyStage, type StageTally } from "./stop-rules.js";
import { yieldToEventLoop } from "../util/event-loop.js";

/** Provenance fields a stored record carries. */
interface Traceable {
  readonly id: string;
  readonly parentIds?: readonly string[];
  readonly model?: string | null;
  readonly promptHash?: string | null;
}

/** One stage of an iteration: its inputs, and the function that makes one item per input, in order. */
export interface StageSpec<I, T extends Traceable> {
  readonly name: string;
  /** Validates the stored records when the stage is loaded after a resume. */
  readonly schema: z.ZodType<T>;
  readonly inputs: readonly I[];
  /** Runs the stage on some of its inputs; returns exactly one item per input given, in the same order. */
  readonly run: (inputs: readonly I[], onItem: () => void) => Promise<StageItem<T>[]>;
}

/**
 * Runs an iteration's stages in order, each committed to the store with its marker before the next starts.
 *
 * - A stage committed before (a resumed run) is loaded, not run again.
 * - Its error rows are retried on resume: only the failed inputs are run again, the ok items are kept, and the
 *   stage is replaced in the store. So a stop caused by a short outage (a server down, a rate limit) finishes
 *   on `--resume` once the cause is gone.
 * - Once a stage has been (re)computed in this process, later stages found in the store were computed from
 *   other inputs: they are discarded and run again (their model calls are answered by the response cache
 *   where the inputs did not change).
 */
export class IterationStages {
  /** Per-stage item and error counts, in run order. */
  readonly tallies: StageTally[] = [];
  /** Dollars each stage's answers cost (made now or before). */
  private readonly costs = new Map<string, number>();
  private recomputed = false;

  constructor(
    private readonly ctx: RunContext,
    private readonly iteration: number,
    private readonly checkpoint: StageCheckpoint,
  ) {}

  async run<I, T extends Traceable>(spec: StageSpec<I, T>): Promise<StageItem<T>[]> {
    const { ctx, iteration, checkpoint } = this;
    await yieldToEventLoop();
    ctx.signal.throwIfAborted();
    const started = ctx.clock.now();
    const before = ctx.meter?.snapshot().totals;
    const usage = (): StageUsage => {
      const after = ctx.meter?.snapshot().totals;
      return {
        seconds: (ctx.clock.now() - started) / 1000,
        promptTokens: (after?.promptTokens ?? 0) - (before?.promptTokens ?? 0),
        completionTokens: (after?.completionTokens ?? 0) - (before?.completionTokens ?? 0),
        // Calls that did engine work (cache hits excluded): kept in the store, never in the run's files.
        calls: (after?.calls ?? 0) - (after?.cachedCalls ?? 0) - ((before?.calls ?? 0) - (before?.cachedCalls ?? 0)),
        costUsd: (after?.costUsd ?? 0) - (before?.costUsd ?? 0),
        spentUsd: (after?.spentUsd ?? 0) - (before?.spentUsd ?? 0),
      };
    };
    let loaded = checkpoint.load(iteration, spec.name, spec.schema);
    if (loaded && (this.recomputed || loaded.length !== spec.inputs.length)) {
      checkpoint.discard(iteration, spec.name);
      loaded = undefined;
    }
    const failed = (loaded ?? []).flatMap((item, index) => (item.status === "error" ? [index] : []));
    // The items this process runs: all of them, the failed ones of a loaded stage, or none.
    const toRun = loaded ? failed.length : spec.inputs.length;
    if (toRun > 0) ctx.budget?.beforeStage(iteration, spec.name, toRun);
    ctx.onEvent({ type: "stage-start", iteration, stage: spec.name, items: toRun });
    let done = 0;
    const onItem = (): void => {
      done++;
      ctx.onEvent({ type: "stage-progress", iteration, stage: spec.name, done, items: toRun });
    };

    let items: StageItem<T>[];
    let resumed = false;
    let retried = 0;
    /** What the stage's answers cost, whether they were made now or before (read from its marker). */
    let costUsd: number;
    if (loaded && failed.length === 0) {
      items = loaded;
      resumed = true;
      costUsd = numberOr(checkpoint.summary(iteration, spec.name)?.costUsd, 0);
    } else if (loaded) {
      const earlier = numberOr(checkpoint.summary(iteration, spec.name)?.costUsd, 0);
      const again = checkCount(spec.name, failed.length, await spec.run(failed.map((index) => spec.inputs[index] as I), onItem));
      items = [...loaded];
      failed.forEach((index, k) => {
        items[index] = again[k] as StageItem<T>;
      });
      retried = failed.length;
      const spent = usage();
      costUsd = earlier + spent.costUsd;
      checkpoint.replace(iteration, spec.name, items, { ...spent, costUsd, items: items.length, errors: errorCount(items), retried });
      this.recomputed = true;
    } else {
      items = checkCount(spec.name, spec.inputs.length, await spec.run(spec.inputs, onItem));
      const spent = usage();
      costUsd = spent.costUsd;
      checkpoint.save(iteration, spec.name, items, { ...spent, items: items.length, errors: errorCount(items) });
      this.recomputed = true;
    }
    const tally = tallyStage(spec.name, items);
    this.tallies.push(tally);
    this.costs.set(spec.name, costUsd);
    const spent = usage();
    ctx.onEvent({
      type: "stage-end",
      iteration,
      stage: spec.name,
      items: items.length,
      errors: tally.errors,
      resumed,
      ...(retried > 0 ? { retried } : {}),
      seconds: spent.seconds,
      promptTokens: spent.promptTokens,
      completionTokens: spent.completionTokens,
      costUsd,
      spentUsd: spent.spentUsd,
    });
    return items;
  }

  /**
   * A value kept with the iteration (the pool after merging), computed once: loaded when committed before and
   * nothing upstream was recomputed in this process, else computed and committed.
   */
  async value<T>(name: string, schema: z.ZodType<T>, compute: () => Promise<T>): Promise<T> {
    await yieldToEventLoop();
    this.ctx.signal.throwIfAborted();
    const stored = this.checkpoint.loadValue(this.iteration, name, schema);
    if (stored !== undefined && !this.recomputed) {
      this.costs.set(name, numberOr(this.checkpoint.summary(this.iteration, name)?.costUsd, 0));
      return stored;
    }
    if (stored !== undefined) this.checkpoint.discard(this.iteration, name);
    const before = this.ctx.meter?.snapshot().totals.costUsd ?? 0;
    const value = await compute();
    const costUsd = (this.ctx.meter?.snapshot().totals.costUsd ?? 0) - before;
    // The value's own fields and its cost side by side in the marker (readers parse the value's fields only).
    this.checkpoint.saveValue(this.iteration, name, typeof value === "object" && value !== null && !Array.isArray(value) ? { ...value, costUsd } : value);
    this.costs.set(name, costUsd);
    this.recomputed = true;
    return value;
  }

  /**
   * Records derived without model calls (gate decisions), so the store holds every record the files show.
   * Replaces an earlier copy, which may have been derived from other inputs.
   */
  record<T extends Traceable>(name: string, records: readonly T[]): void {
    const items = records.map((record) => ({ status: "ok" as const, record }));
    if (this.checkpoint.load(this.iteration, name, z.unknown()) !== undefined) this.checkpoint.replace(this.iteration, name, items);
    else this.checkpoint.save(this.iteration, name, items);
  }

  /** Item counts per stage (for metrics). */
  itemsByStage(): Record<string, number> {
    return Object.fromEntries(this.tallies.map((t) => [t.stage, t.items]));
  }

  /** Cost per stage in dollars (for metrics), rounded to a millionth of a dollar so files stay stable. */
  costByStage(): Record<string, number> {
    return Object.fromEntries([...this.costs].map(([stage, usd]) => [stage, roundUsd(usd)]));
  }

  /** Error counts per stage (for metrics). */
  errorsByStage(): Record<string, number> {
    return Object.fromEntries(this.tallies.map((t) => [t.stage, t.errors]));
  }
}

function checkCount<T>(stage: string, expected: number, items: StageItem<T>[]): StageItem<T>[] {
  if (items.length !== expected) {
    throw new IterAlignError("USAGE", `stage ${stage} returned ${items.length} items for ${expected} inputs`);
  }
  return items;
}


/** What a stage's marker records about the work (in the store only: it depends on the machine and the cache). */
interface StageUsage {
  seconds: number;
  promptTokens: number;
  completionTokens: number;
  calls: number;
  /** Dollars the stage's answers cost to make, cached ones included. */
  costUsd: number;
  /** Dollars this process paid for the stage. */
  spentUsd: number;
}

function errorCount(items: readonly StageItem<unknown>[]): number {
  return items.filter((i) => i.status === "error").length;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

/** Dollars rounded to a millionth: sums of floats in another order must not change a file's bytes. */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e6) / 1e6;
}
