import { z } from "zod";

/**
 * The files of a run that people and tools read: `iterations/NNN/metrics.json`, `summary.json` and
 * `eval/summary.json`. Each has a
 * `version`; readers (the report, `iteralign compare`, your scripts) validate against these schemas and refuse a
 * version they do not know instead of misreading it. Contracts only.
 */

/** Version of `metrics.json` and `summary.json`. */
export const ARTIFACT_VERSION = 1;

const Counts = z.record(z.string(), z.number());

/** What one iteration did (`metrics.json` without its `version`, and each entry of `summary.json`'s iterations). */
export const IterationMetricsSchema = z.object({
  iteration: z.number().int().nonnegative(),
  prompts: z.number().int().nonnegative(),
  attempts: z.number().int().nonnegative(),
  failures: z.number().int().nonnegative(),
  failureRate: z.number().min(0).max(1),
  /** Items that ended in errors, all stages together. */
  errors: z.number().int().nonnegative(),
  /** Items each stage attempted. */
  itemsByStage: Counts,
  /** Items of each stage that ended in errors. */
  errorsByStage: Counts,
  /** Dollars the iteration's answers cost at the models' prices (0 for local models). */
  costUsd: z.number().nonnegative(),
  costByStage: Counts,
  principlesAdded: z.number().int().nonnegative(),
  principlesMerged: z.number().int().nonnegative(),
  principlesRetired: z.number().int().nonnegative(),
  revisions: z.number().int().nonnegative(),
  gatePassRate: z.number().min(0).max(1).nullable(),
  fixed: z.number().int().nonnegative(),
  gateRejections: Counts,
  trainingExamples: z.number().int().nonnegative(),
  /** Preference pairs left out of the preference exports because the original answer was empty. */
  preferencePairsDropped: z.number().int().nonnegative(),
  skipped: z.boolean(),
  /** With several judges: Cohen's kappa and agreement per pair, and how many verdicts they disagreed on. */
  judgeAgreement: z
    .object({
      judges: z.array(z.string()),
      pairs: z.array(z.object({ a: z.string(), b: z.string(), n: z.number().int().nonnegative(), agreement: z.number().nullable(), kappa: z.number().nullable() })),
      disagreements: z.number().int().nonnegative(),
    })
    .optional(),
  /** Training examples whose prompt matched an evaluation set (`contamination.json` lists them). */
  contaminated: z.number().int().nonnegative().optional(),
  /** Of those, dropped from the exports (`export.decontaminate`). */
  decontaminated: z.number().int().nonnegative().optional(),
  /** `loop.attacks`: generated, accepted and dropped attacks, the batch's make-up, attack success per strategy and source, replays. */
  attacks: z
    .object({
      generated: z.number().int().nonnegative(),
      accepted: z.number().int().nonnegative(),
      dropped: Counts,
      heldout: z.number().int().nonnegative(),
      batch: z.object({ static: z.number().int().nonnegative(), replay: z.number().int().nonnegative(), fresh: z.number().int().nonnegative() }),
      heldoutByStrategy: z.record(z.string(), z.object({ n: z.number().int().nonnegative(), succeeded: z.number().int().nonnegative() })),
      heldoutByCategory: z.record(z.string(), z.object({ n: z.number().int().nonnegative(), succeeded: z.number().int().nonnegative() })),
      bySource: z.record(z.string(), z.object({ attempts: z.number().int().nonnegative(), failures: z.number().int().nonnegative() })),
      replay: z.object({ n: z.number().int().nonnegative(), stillFailing: z.number().int().nonnegative(), fixed: z.number().int().nonnegative(), regressions: z.number().int().nonnegative() }),
    })
    .optional(),
});
export type IterationMetrics = z.infer<typeof IterationMetricsSchema>;

/** `iterations/NNN/metrics.json`. */
export const MetricsFileSchema = IterationMetricsSchema.extend({ version: z.literal(ARTIFACT_VERSION) });

/** `summary.json`: the run as a whole. */
export const SummaryFileSchema = z.object({
  version: z.literal(ARTIFACT_VERSION),
  runId: z.string(),
  stopReason: z.string(),
  iterations: z.array(IterationMetricsSchema),
  activePrinciples: z.number().int().nonnegative(),
  errorsByStage: Counts,
  costUsd: z.number().nonnegative(),
  costByStage: Counts,
  /** With a weight trainer: its name, the target each iteration red-teamed, and the last one. */
  trainer: z.string().optional(),
  targets: z.array(z.object({ iteration: z.number().int().nonnegative(), model: z.string(), adapters: z.array(z.string()).readonly().optional() })).optional(),
  finalTarget: z.string().optional(),
  /** LoRA adapters applied on top of `finalTarget` (a `trl` trainer's adapter hand-off). */
  finalAdapters: z.array(z.string()).readonly().optional(),
  untrainedExamples: z.number().int().nonnegative().optional(),
  /** `loop.calibration`: how far the run's judge agreed with human labels (`calibration.json` has every item). */
  calibration: z
    .object({
      data: z.string(),
      judge: z.string(),
      preset: z.string(),
      judgeConfigHash: z.string(),
      n: z.number().int().nonnegative(),
      errors: z.number().int().nonnegative(),
      accuracy: z.number().nullable(),
      precision: z.number().nullable(),
      recall: z.number().nullable(),
      f1: z.number().nullable(),
      kappa: z.number().nullable(),
    })
    .optional(),
});
export type SummaryFile = z.infer<typeof SummaryFileSchema>;

const ScoringModeSchema = z.enum(["loglik", "generative", "judge"]);

/** One metric of an evaluation summary entry. */
export const SummaryMetricSchema = z.object({
  benchmark: z.string().min(1),
  name: z.string().min(1),
  value: z.number(),
  n: z.number().int().nonnegative(),
  mode: ScoringModeSchema,
  higherIsBetter: z.boolean(),
  ci95: z.tuple([z.number(), z.number()]).optional(),
  category: z.string().optional(),
});

/** One evaluated model of a run: the base (`iteration` null) or an iteration's target. */
export const EvalSummaryEntrySchema = z.object({
  label: z.string().min(1),
  iteration: z.number().int().nonnegative().nullable(),
  model: z.string(),
  trainer: z.string().optional(),
  metrics: z.array(SummaryMetricSchema),
});

/** `eval/summary.json`: every evaluation of a run, in the order they ran. */
export const EvalSummaryFileSchema = z.object({ version: z.literal(ARTIFACT_VERSION), entries: z.array(EvalSummaryEntrySchema) });
export type EvalSummaryFileContent = z.infer<typeof EvalSummaryFileSchema>;
