/**
 * What the report and the viewer show, as plain data: made by the loaders (run-view.ts, item-index.ts) from a run's
 * files and store, consumed by the renderer and the browser client. Types only (the client imports them too).
 */

import type { ItemResult } from "../spec/benchmark.js";

/** Version of the data the page reads (embedded in a report, or served by `iteralign view`). */
export const REPORT_DATA_VERSION = 1;

/** Work and cost of one stage of one iteration (or of a whole run). */
export interface StageUsageView {
  readonly stage: string;
  readonly items: number;
  readonly errors: number;
  /** From the store's stage markers; null when the stage ran before markers kept them, or is running. */
  readonly seconds: number | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  /** Model calls that did work (cache hits excluded). */
  readonly calls: number | null;
  readonly costUsd: number;
}

/** `metrics.json` of an iteration (see spec/artifacts.ts), as the page reads it. */
export interface IterationMetricsView {
  readonly iteration: number;
  readonly prompts: number;
  readonly attempts: number;
  readonly failures: number;
  readonly failureRate: number;
  readonly errors: number;
  readonly itemsByStage: Readonly<Record<string, number>>;
  readonly errorsByStage: Readonly<Record<string, number>>;
  readonly costUsd: number;
  readonly costByStage: Readonly<Record<string, number>>;
  readonly principlesAdded: number;
  readonly principlesMerged: number;
  readonly principlesRetired: number;
  readonly revisions: number;
  readonly gatePassRate: number | null;
  readonly fixed: number;
  readonly gateRejections: Readonly<Record<string, number>>;
  readonly trainingExamples: number;
  readonly preferencePairsDropped: number;
  readonly skipped: boolean;
  /** Training examples that matched an evaluation set, and of those dropped (export.decontaminate). */
  readonly contaminated?: number;
  readonly decontaminated?: number;
  /** `loop.attacks`: the attack stage's figures (see IterationMetricsSchema in spec/artifacts). */
  readonly attacks?: {
    readonly generated: number;
    readonly accepted: number;
    readonly dropped: Readonly<Record<string, number>>;
    readonly heldout: number;
    readonly batch: { readonly static: number; readonly replay: number; readonly fresh: number };
    readonly heldoutByStrategy: Readonly<Record<string, { readonly n: number; readonly succeeded: number }>>;
    readonly heldoutByCategory: Readonly<Record<string, { readonly n: number; readonly succeeded: number }>>;
    readonly bySource: Readonly<Record<string, { readonly attempts: number; readonly failures: number }>>;
    readonly replay: { readonly n: number; readonly stillFailing: number; readonly fixed: number; readonly regressions: number };
  };
  /** With several judges: kappa per pair and the verdicts they disagreed on. */
  readonly judgeAgreement?: {
    readonly judges: readonly string[];
    readonly pairs: ReadonlyArray<{ readonly a: string; readonly b: string; readonly n: number; readonly agreement: number | null; readonly kappa: number | null }>;
    readonly disagreements: number;
  };
}

export interface TrainingView {
  readonly trainer: string;
  readonly examples: number;
  /** The model the next iteration red-teamed. */
  readonly model: string;
  readonly dataHash: string;
  readonly finalLoss?: number;
  readonly seconds?: number;
  readonly lossCurve?: ReadonlyArray<{ readonly step: number; readonly loss: number }>;
}

export interface IterationView {
  readonly iteration: number;
  readonly metrics: IterationMetricsView;
  readonly stages: readonly StageUsageView[];
  /** Principles active once the iteration's pool was updated. */
  readonly activePrinciples: number;
  readonly training?: TrainingView;
}

/** One version of a principle, as a pool snapshot held it. */
export interface PrincipleVersionView {
  readonly version: number;
  /** The iteration whose pool first held this version. */
  readonly iteration: number;
  readonly title: string;
  readonly text: string;
  readonly status: "active" | "retired";
}

export interface PrincipleView {
  readonly id: string;
  readonly title: string;
  readonly text: string;
  readonly status: "active" | "retired";
  readonly source: string;
  readonly firstIteration: number;
  /** Every version, oldest first (a merge that rewrote the text makes a new version). */
  readonly versions: readonly PrincipleVersionView[];
  /** Item ids (red-team attempts) whose failures motivated it. */
  readonly evidence: readonly string[];
  readonly mergedFrom: readonly string[];
  /** The principle this one was merged into, when it was retired by a merge. */
  readonly mergedInto?: string;
  /** Items whose revision was written under this principle (browse them with the item filter `principle`). */
  readonly revisions: number;
  /** Of those, the revisions the gate accepted (they became training examples). */
  readonly accepted: number;
  /** `loop.efficacy`: leave-one-out figures summed over the run so far (trials, fixes, over-refusals). */
  readonly efficacy?: { readonly uses: number; readonly trials: number; readonly fixes: number; readonly overRefusals: number };
  /** Why `loop.retire` retired it. */
  readonly retiredReason?: string;
}

/** A metric of an evaluation, as `eval/summary.json` holds it. */
export interface EvalMetricView {
  readonly benchmark: string;
  readonly name: string;
  readonly value: number;
  readonly n: number;
  readonly mode: string;
  readonly higherIsBetter: boolean;
  readonly ci95?: readonly [number, number];
  readonly category?: string;
}

export interface EvalEntryView {
  readonly label: string;
  readonly iteration: number | null;
  readonly model: string;
  readonly trainer?: string;
  readonly metrics: readonly EvalMetricView[];
}

/** One evaluated item of a benchmark (from `eval/<label>/eval.json`): the benchmark contract's item. */
export type EvalItemView = ItemResult;

export interface EvalBenchmarkView {
  readonly label: string;
  readonly benchmark: string;
  readonly mode: string;
  readonly scoringPath?: string;
  readonly items: number;
}

export interface ModelView {
  readonly name: string;
  readonly provider: string;
  readonly model: string;
  readonly roles: readonly string[];
}

export interface RunView {
  readonly version: typeof REPORT_DATA_VERSION;
  readonly runId: string;
  readonly status: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly error: string | null;
  readonly stopReason: string | null;
  /** The stored config with secrets (header values, keys) redacted. */
  readonly config: unknown;
  readonly configHash: string;
  readonly models: readonly ModelView[];
  readonly trainer: string;
  readonly split: { readonly train: number | null; readonly heldout: number | null; readonly counts: Readonly<Record<string, { train: number; heldout: number }>> };
  readonly iterations: readonly IterationView[];
  /** The stages of all iterations summed. */
  readonly stageTotals: readonly StageUsageView[];
  readonly totals: { readonly items: number; readonly errors: number; readonly promptTokens: number; readonly completionTokens: number; readonly seconds: number; readonly costUsd: number };
  readonly principles: readonly PrincipleView[];
  readonly eval: { readonly entries: readonly EvalEntryView[]; readonly benchmarks: readonly EvalBenchmarkView[] };
  /** `loop.calibration`: the judge against human labels (summary.json's figures), or null. */
  readonly calibration: {
    readonly data: string;
    readonly judge: string;
    readonly preset: string;
    readonly judgeConfigHash: string;
    readonly n: number;
    readonly errors: number;
    readonly accuracy: number | null;
    readonly precision: number | null;
    readonly recall: number | null;
    readonly f1: number | null;
    readonly kappa: number | null;
  } | null;
  /** What the loader could not read (a missing or damaged file), shown on the page instead of failing it. */
  readonly warnings: readonly string[];
}

/** How far an item went through the loop. */
export type ItemStage = "red-team" | "judge" | "self-correct" | "gate" | "exported";

/** One red-team attempt in a listing. */
export interface ItemSummary {
  /** The attempt's record id, e.g. `it0:attempt:dangerousqa:270b8c6e645eeb44`. */
  readonly id: string;
  readonly iteration: number;
  readonly promptId: string;
  readonly dataset: string;
  readonly category: string | null;
  /** The start of the prompt (at most 200 characters). */
  readonly promptStart: string;
  readonly verdict: "pass" | "fail" | "error" | null;
  readonly stage: ItemStage;
  /** `accepted`, a rejection reason (`still-failing`, `over-refusal`, `judge-error`), `error`, or null. */
  readonly gate: string | null;
  readonly hasError: boolean;
  /** Principles the item's revision was written under. */
  readonly principleIds: readonly string[];
}

export interface StageError {
  readonly stage: string;
  readonly code: string;
  readonly message: string;
}

/** Everything about one item: each stage's record, linked. Texts may be shortened (see `truncated`). */
export interface ItemTrace extends ItemSummary {
  readonly prompt: string | null;
  readonly response: string | null;
  readonly finishReason: string | null;
  readonly targetModel: string | null;
  readonly judge: null | { readonly pass: boolean; readonly violated: readonly string[]; readonly severity: string; readonly rationale: string; readonly promptBenign: boolean | null; readonly model: string | null };
  readonly revision: null | {
    readonly id: string;
    readonly mode: string;
    readonly critique: string | null;
    readonly revised: string;
    readonly principles: ReadonlyArray<{ readonly id: string; readonly title: string }>;
    readonly model: string | null;
  };
  readonly gateVerdict: null | { readonly pass: boolean; readonly refusal: boolean; readonly rationale: string; readonly model: string | null };
  readonly gateDecision: null | { readonly accepted: boolean; readonly reason: string };
  readonly example: null | { readonly id: string; readonly messages: ReadonlyArray<{ readonly role: string; readonly content: string }>; readonly chosen: string; readonly rejected: string };
  /** Principles this item's failure is evidence for. */
  readonly evidenceFor: ReadonlyArray<{ readonly id: string; readonly title: string }>;
  readonly errors: readonly StageError[];
  /** Fields whose text was shortened for the page, with their full length. */
  readonly truncated: Readonly<Record<string, number>>;
}

export interface ItemQuery {
  readonly iteration?: number;
  readonly stage?: ItemStage;
  readonly verdict?: "pass" | "fail" | "error" | "none";
  readonly gate?: string;
  readonly dataset?: string;
  readonly category?: string;
  /** Items whose failure is evidence for, or whose revision used, this principle. */
  readonly principle?: string;
  /** Only revised items (true) or unrevised ones (false). With `principle`: only those revised under it. */
  readonly revised?: boolean;
  /** Only items with an error row at some stage (true), or without (false). */
  readonly errors?: boolean;
  /** Case-insensitive search in the prompt's start and the item id. */
  readonly text?: string;
  readonly offset?: number;
  readonly limit?: number;
}

export interface ItemFacets {
  readonly iterations: readonly number[];
  readonly datasets: readonly string[];
  readonly categories: readonly string[];
  readonly gates: readonly string[];
}

export interface ItemPage {
  readonly total: number;
  readonly offset: number;
  readonly limit: number;
  readonly items: readonly ItemSummary[];
  readonly facets: ItemFacets;
}

/** A running run's position, for the viewer's live view. */
export interface RunProgress {
  readonly runId: string;
  readonly status: string;
  /** Records of the run; changes whenever it moves on. */
  readonly revision: number;
  readonly iterations: number;
  /** Stages finished, latest last: `{iteration, stage, items, errors}`. */
  readonly stages: ReadonlyArray<{ readonly iteration: number; readonly stage: string; readonly items: number; readonly errors: number; readonly seconds: number | null }>;
}
