import { IterAlignError } from "../spec/errors.js";
import type { StageItem } from "../stages/stage-item.js";

/**
 * The loop's stop rules as pure functions of what happened: the orchestrator asks them, tests check them
 * directly. Nothing here reads a clock, the store or a model.
 */

/** What one stage of one iteration did: items attempted, items that ended in errors, by error code. */
export interface StageTally {
  readonly stage: string;
  readonly items: number;
  readonly errors: number;
  /** Error rows by code, e.g. `{HTTP_STATUS: 3, TIMEOUT: 1}`. */
  readonly byCode: Readonly<Record<string, number>>;
  /** The first error row's id, code and message, for the stop message. */
  readonly firstError?: { readonly id: string; readonly code: string; readonly message: string };
}

/** Counts a stage's items and error rows. */
export function tallyStage(stage: string, items: readonly StageItem<unknown>[]): StageTally {
  const byCode: Record<string, number> = {};
  let firstError: StageTally["firstError"];
  let errors = 0;
  for (const item of items) {
    if (item.status !== "error") continue;
    errors++;
    byCode[item.error.code] = (byCode[item.error.code] ?? 0) + 1;
    firstError ??= { id: item.id, code: item.error.code, message: item.error.message };
  }
  return { stage, items: items.length, errors, byCode, ...(firstError ? { firstError } : {}) };
}

function codes(byCode: Readonly<Record<string, number>>): string {
  return Object.entries(byCode)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([code, n]) => `${code} x${n}`)
    .join(", ");
}

/**
 * A stage whose every item failed stops the run: nothing downstream can be computed from it, and carrying
 * on would end the iteration with 0 principles or 0 training examples while looking like success.
 */
export function stageFailure(iteration: number, tally: StageTally): IterAlignError | undefined {
  if (tally.items === 0 || tally.errors < tally.items) return undefined;
  const first = tally.firstError;
  return new IterAlignError(
    "STAGE_FAILED",
    `iteration ${iteration}, stage ${tally.stage}: all ${tally.items} items failed (${codes(tally.byCode)})` +
      (first ? `; first error (${first.id}): [${first.code}] ${first.message}` : ""),
    { details: { iteration, stage: tally.stage, items: tally.items, errors: tally.errors, byCode: tally.byCode } },
  );
}

/**
 * The iteration's error rate so far: error rows over the items its stages actually attempted (each stage's
 * items count, whatever that stage is). Stops the run when above `maxErrorRate`.
 */
export function errorRateExceeded(iteration: number, tallies: readonly StageTally[], maxErrorRate: number): IterAlignError | undefined {
  const items = tallies.reduce((n, t) => n + t.items, 0);
  const errors = tallies.reduce((n, t) => n + t.errors, 0);
  if (items === 0 || errors / items <= maxErrorRate) return undefined;
  const perStage = tallies
    .filter((t) => t.errors > 0)
    .map((t) => `${t.stage} ${t.errors}/${t.items} (${codes(t.byCode)})`)
    .join("; ");
  const first = tallies.find((t) => t.firstError)?.firstError;
  return new IterAlignError(
    "ERROR_RATE_EXCEEDED",
    `iteration ${iteration}: ${errors} of ${items} items failed (${(errors / items).toFixed(3)}), more than loop.maxErrorRate (${maxErrorRate}): ${perStage}` +
      (first ? `; first error (${first.id}): [${first.code}] ${first.message}` : ""),
    { details: { iteration, items, errors, maxErrorRate } },
  );
}

/** What the stop rules look at after an iteration. */
export interface StopState {
  /** Iterations finished so far (this one included). */
  readonly iterationsDone: number;
  /** Consecutive finished iterations without failures, ending with this one. */
  readonly cleanBatches: number;
  /** Engine tokens the run has used. */
  readonly tokensUsed: number;
  /** Train prompts not yet red-teamed. */
  readonly remainingPrompts: number;
}

/** The stop rules' settings (`loop.*`). */
export interface StopRules {
  readonly maxIterations?: number | undefined;
  readonly stopAfterCleanBatches?: number | undefined;
  readonly tokenBudget?: number | undefined;
}

/**
 * Why the loop stops after this iteration, or undefined to go on. Rules are checked in a fixed order: clean
 * batches, the token budget, the end of the train split, then `maxIterations`.
 */
export function stopReason(state: StopState, rules: StopRules): string | undefined {
  if (rules.stopAfterCleanBatches !== undefined && state.cleanBatches >= rules.stopAfterCleanBatches) {
    return `${state.cleanBatches} consecutive batches without failures`;
  }
  if (rules.tokenBudget !== undefined && state.tokensUsed > rules.tokenBudget) return `token budget of ${rules.tokenBudget} spent`;
  if (state.remainingPrompts <= 0) return "train split exhausted";
  if (rules.maxIterations !== undefined && state.iterationsDone >= rules.maxIterations) {
    return `reached loop.maxIterations (${rules.maxIterations})`;
  }
  return undefined;
}

/** Sums per-stage error counts over iterations, in first-seen stage order. */
export function errorsByStage(perIteration: ReadonlyArray<Readonly<Record<string, number>>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of perIteration) for (const [stage, n] of Object.entries(counts)) out[stage] = (out[stage] ?? 0) + n;
  return out;
}
