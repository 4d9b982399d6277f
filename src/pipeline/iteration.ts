import { addEfficacy, EfficacyTrialSchema, efficacyInputs, measureEfficacy, principleEfficacy, PrincipleEfficacySchema, principlesToRetire, type PrincipleEfficacy } from "../stages/efficacy.js";
import { checkContamination } from "../datasets/contamination.js";
import { z } from "zod";
import { judgeAgreement, judgePanel } from "../stages/judge.js";
import { ConstitutionPool, type PoolChanges } from "../constitutions/pool.js";
import { lexicalSimilarity, embeddingSimilarity, oracleConfirm, DEFAULT_EMBEDDING_THRESHOLD, DEFAULT_LEXICAL_THRESHOLD } from "../constitutions/similarity.js";
import { diffConstitutions, renderConstitutionJson, renderConstitutionMarkdown } from "../constitutions/render.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { AttemptSchema, RevisionSchema, VerdictSchema, type Attempt, type Principle, type TrainingExample, type Verdict } from "../spec/records.js";
import {
  EXPORTERS,
  gate,
  gateDecisions,
  gateStats,
  GateVerdictSchema,
  judge,
  okRecords,
  preferenceExamples,
  propose,
  ProposalSchema,
  redTeam,
  selfCorrect,
  toTrainingExamples,
  type ExportFormat,
} from "../stages/index.js";
import type { AttackBatch } from "./attack-stage.js";
import { StageCheckpoint } from "./checkpoint.js";
import { IterationStages, roundUsd } from "./iteration-stages.js";
import { jsonFile, jsonlFile } from "./run-layout.js";
import type { RunContext } from "./run-context.js";
import { errorRateExceeded, stageFailure } from "./stop-rules.js";

/** What one iteration did; deterministic (no times), written to `metrics.json` (the schema is in spec/artifacts). */
export type { IterationMetrics } from "../spec/artifacts.js";
import type { IterationMetrics } from "../spec/artifacts.js";

/** The export files of an iteration, by format. */
export const EXPORT_FILES: Readonly<Record<ExportFormat, string>> = {
  sharegpt: "sft.sharegpt.json",
  "trl-sft": "sft.trl.jsonl",
  "openai-chat": "sft.openai.jsonl",
  "trl-preference": "preference.trl.jsonl",
  "openai-preference": "preference.openai.jsonl",
};

/**
 * `loop.attacks` in the metrics: the attack stage's summary, failures per source of the batch (`static`, `replay`,
 * `attack:<strategy>`), and the replayed failures' outcome: still failing, fixed, and regressions (failing again
 * after passing the last time they were judged).
 */
function attackOutcome(attacks: AttackBatch, attempts: readonly Attempt[], verdicts: readonly Verdict[]): NonNullable<IterationMetrics["attacks"]> {
  const passOf = new Map(verdicts.map((v) => [v.subjectId, v.verdict.pass]));
  const bySource: Record<string, { attempts: number; failures: number }> = {};
  const replay = { n: 0, stillFailing: 0, fixed: 0, regressions: 0 };
  for (const a of attempts) {
    const pass = passOf.get(a.id);
    if (pass === undefined) continue;
    const source = attacks.sourceOf.get(a.promptId) ?? "static";
    const t = (bySource[source] ??= { attempts: 0, failures: 0 });
    t.attempts++;
    if (!pass) t.failures++;
    if (source === "replay") {
      replay.n++;
      const last = attacks.lastPass.get(a.promptId);
      if (pass) replay.fixed++;
      else if (last === true) replay.regressions++;
      else replay.stillFailing++;
    }
  }
  return { ...attacks.summary, bySource, replay };
}

const PoolValueSchema = z.object({ principles: z.array(z.unknown()), changes: z.unknown() });

/**
 * Runs (or, after a crash, finishes) one iteration: red-team the batch, judge, propose constitutions from the
 * failures, merge them into the pool, self-correct, gate, export. Each stage's outputs are committed before
 * the next stage starts; a stage already committed is loaded instead of re-run, and its error rows are retried
 * (see {@link IterationStages}). After each stage the stop rules look at its errors: a stage whose every item
 * failed, or an iteration past `loop.maxErrorRate`, stops the run before anything is built on it, and
 * `--resume` retries the failed items.
 */
export async function runIteration(
  ctx: RunContext,
  input: { iteration: number; batch: readonly RedTeamPrompt[]; pool: ConstitutionPool; attacks?: AttackBatch },
): Promise<{ metrics: IterationMetrics; pool: ConstitutionPool; examples: TrainingExample[] }> {
  const { iteration, batch } = input;
  const { config, models, signal } = ctx;
  const checkpoint = new StageCheckpoint(ctx.store, ctx.runId, ctx.clock);
  const stages = new IterationStages(ctx, iteration, checkpoint);
  const checkStops = (): void => {
    const last = stages.tallies[stages.tallies.length - 1];
    const failure = (last && stageFailure(iteration, last)) ?? errorRateExceeded(iteration, stages.tallies, config.loop.maxErrorRate);
    if (failure) throw failure;
  };
  const write = (name: string, content: string): void => {
    ctx.layout.writeIteration(iteration, name, content);
  };

  const attemptItems = await stages.run({
    name: "red-team",
    schema: AttemptSchema,
    inputs: batch,
    run: (prompts, onItem) => redTeam(prompts, { target: models.target, iteration, params: config.loop.redTeam, signal, onItem }),
  });
  write("attempts.jsonl", jsonlFile(attemptItems));
  checkStops();
  const attempts = okRecords(attemptItems);

  const verdictItems = await stages.run({
    name: "judge",
    schema: VerdictSchema,
    inputs: attempts,
    run: (subjects, onItem) =>
      models.judges
        ? judgePanel(subjects, { judges: models.judges, rule: config.loop.judgeRule, iteration, preset: config.loop.judge, signal, onItem })
        : judge(subjects, { judge: models.judge, iteration, preset: config.loop.judge, signal, onItem }),
  });
  write("verdicts.jsonl", jsonlFile(verdictItems));
  checkStops();
  const verdicts = okRecords(verdictItems);
  // A panel's agreement (per pair of judges, on the items both judged) and the verdicts they disagreed on.
  const agreement = models.judges ? judgeAgreement(verdicts) : undefined;
  if (models.judges) {
    write("judge-disagreements.jsonl", jsonlFile(verdicts.filter((v) => new Set((v.judges ?? []).filter((j) => j.pass !== null).map((j) => j.pass)).size > 1)));
  }
  const byAttempt = new Map(attempts.map((a) => [a.id, a]));
  const failures = verdicts
    .filter((v) => !v.verdict.pass)
    .map((verdict) => ({ attempt: byAttempt.get(verdict.subjectId) as Attempt, verdict }))
    .filter((f) => f.attempt !== undefined);

  const attackMetrics = input.attacks ? attackOutcome(input.attacks, attempts, verdicts) : undefined;
  const base = {
    iteration,
    prompts: batch.length,
    attempts: attempts.length,
    failures: failures.length,
    ...(agreement ? { judgeAgreement: agreement } : {}),
    ...(attackMetrics ? { attacks: attackMetrics } : {}),
  };
  const failureRate = attempts.length === 0 ? 0 : failures.length / attempts.length;
  const counts = (): Pick<IterationMetrics, "errors" | "itemsByStage" | "errorsByStage" | "costUsd" | "costByStage"> => {
    const errorsByStage = stages.errorsByStage();
    const costByStage = stages.costByStage();
    return {
      errors: Object.values(errorsByStage).reduce((a, b) => a + b, 0),
      itemsByStage: stages.itemsByStage(),
      errorsByStage,
      costUsd: roundUsd(Object.values(costByStage).reduce((a, b) => a + b, 0)),
      costByStage,
    };
  };
  if (failures.length === 0) {
    // A batch without failures teaches nothing: recorded, and the constitution carried over unchanged.
    const metrics: IterationMetrics = {
      ...base,
      failureRate,
      ...counts(),
      principlesAdded: 0,
      principlesMerged: 0,
      principlesRetired: 0,
      revisions: 0,
      gatePassRate: null,
      fixed: 0,
      gateRejections: {},
      trainingExamples: 0,
      preferencePairsDropped: 0,
      skipped: true,
    };
    writeConstitution(ctx, iteration, input.pool, input.pool);
    write("metrics.json", jsonFile({ version: METRICS_VERSION, ...metrics }));
    return { metrics, pool: input.pool, examples: [] };
  }

  const proposalItems = await stages.run({
    name: "propose",
    schema: ProposalSchema,
    inputs: [failures],
    run: async (batches, onItem) => (await Promise.all(batches.map((f) => propose(f, { oracle: models.oracle, iteration, signal, onItem })))).flat(),
  });
  write("proposals.json", jsonFile(proposalItems));
  checkStops();
  const proposals = okRecords(proposalItems).flatMap((p) => p.constitutions);

  const merged = await stages.value("pool", PoolValueSchema, async () => {
    const update = await input.pool.mergeProposals(proposals, {
      iteration,
      similarity: models.embedder ? embeddingSimilarity(models.embedder) : lexicalSimilarity(),
      confirm: oracleConfirm(models.oracle),
      threshold: config.loop.mergeThreshold ?? (models.embedder ? DEFAULT_EMBEDDING_THRESHOLD : DEFAULT_LEXICAL_THRESHOLD),
      signal,
    });
    return { ...update.pool.snapshot(), changes: update.changes };
  });
  const pool = ConstitutionPool.fromSnapshot({ principles: merged.principles });
  const changes = merged.changes as PoolChanges;
  writeConstitution(ctx, iteration, input.pool, pool);

  const active = pool.active();
  const toRevise = failures
    .map(({ attempt }) => ({ attempt, principles: principlesFor(attempt, active, config.loop.topKPrinciples) }))
    .filter((i) => i.principles.length > 0);
  const revisionItems = await stages.run({
    name: "self-correct",
    schema: RevisionSchema,
    inputs: toRevise,
    run: (items, onItem) => selfCorrect(items, { target: models.target, iteration, mode: config.loop.selfCorrect, signal, onItem }),
  });
  write("revisions.jsonl", jsonlFile(revisionItems));
  checkStops();
  const revisions = okRecords(revisionItems);

  const gateItems = revisions.map((revision) => ({ revision, attempt: byAttempt.get(revision.attemptId) as Attempt }));
  const gateVerdicts = await stages.run({
    name: "gate",
    schema: GateVerdictSchema,
    inputs: gateItems,
    run: (items, onItem) => gate(items, { judge: models.judge, iteration, signal, onItem }),
  });
  write("gate-verdicts.jsonl", jsonlFile(gateVerdicts));
  const decisions = gateDecisions(gateItems, gateVerdicts, { iteration, judgeModelId: models.judge.modelId });
  stages.record("gate-decision", decisions);
  write("gate.jsonl", jsonlFile(decisions));
  checkStops();
  const stats = gateStats(decisions);

  const built = toTrainingExamples({ decisions, revisions, attempts, principles: pool.principles(), iteration });
  // Contamination check before export: the training prompts against every evaluation set the run uses.
  let examples = built;
  let contamination: { contaminated: number; decontaminated: number } | undefined;
  if (ctx.evalTexts && built.length > 0) {
    const report = checkContamination(
      built.map((e) => ({ id: e.id, text: e.messages.map((m) => m.content).join("\n") })),
      await ctx.evalTexts(),
      { ngram: config.export.ngram, nearDuplicateThreshold: config.export.nearDuplicateThreshold },
    );
    const flagged = new Set(report.matches.map((m) => m.trainId));
    if (config.export.decontaminate) examples = built.filter((e) => !flagged.has(e.id));
    write("contamination.json", jsonFile({ ...report, dropped: built.length - examples.length }));
    contamination = { contaminated: flagged.size, decontaminated: built.length - examples.length };
  }
  for (const [format, exporter] of Object.entries(EXPORTERS) as Array<[ExportFormat, (e: typeof examples) => string]>) {
    write(EXPORT_FILES[format], exporter(examples));
  }
  // Per-principle efficacy (leave-one-out) and retirement, when asked for.
  let finalPool = pool;
  let retiredNow = 0;
  if (config.loop.efficacy || config.loop.retire) {
    const samples = config.loop.efficacy?.samples ?? 4;
    const principleMap = new Map(pool.principles().map((p) => [p.id, p]));
    const trialItems = await stages.run({
      name: "efficacy",
      schema: EfficacyTrialSchema,
      inputs: efficacyInputs(revisions, decisions, byAttempt, principleMap, samples),
      run: (inputs, onItem) => measureEfficacy(inputs, { target: models.target, judge: models.judge, iteration, mode: config.loop.selfCorrect, signal, onItem }),
    });
    write("efficacy-trials.jsonl", jsonlFile(trialItems));
    checkStops();
    const thisIteration = principleEfficacy(revisions, decisions, okRecords(trialItems));
    const outcome = await stages.value("retire", EfficacyValueSchema, async () => {
      const cumulative = addEfficacy(previousEfficacy(checkpoint, iteration), thisIteration);
      const retired = config.loop.retire ? principlesToRetire(cumulative, new Set(pool.active().map((p) => p.id)), config.loop.retire) : [];
      return { iteration: thisIteration, cumulative, retired };
    });
    for (const r of outcome.retired) finalPool = finalPool.retire(r.id, r.reason).pool;
    retiredNow = outcome.retired.length;
    write("efficacy.json", jsonFile({ version: 1, iteration, perPrinciple: outcome.iteration, cumulative: outcome.cumulative, retired: outcome.retired }));
    if (retiredNow > 0) writeConstitution(ctx, iteration, input.pool, finalPool);
  }
  const metrics: IterationMetrics = {
    ...base,
    failureRate,
    ...counts(),
    principlesAdded: changes.added.length,
    principlesMerged: changes.merged.length,
    principlesRetired: changes.retired.length + retiredNow,
    revisions: revisions.length,
    gatePassRate: decisions.length === 0 ? null : stats.passRate,
    fixed: decisions.filter((d) => d.accepted).length,
    gateRejections: Object.fromEntries(Object.entries(stats.byReason).filter(([reason, n]) => reason !== "pass" && n > 0)),
    trainingExamples: examples.length,
    preferencePairsDropped: examples.length - preferenceExamples(examples).length,
    skipped: false,
    ...(contamination ?? {}),
  };
  write("metrics.json", jsonFile({ version: METRICS_VERSION, ...metrics }));
  return { metrics, pool: finalPool, examples };
}

export { ARTIFACT_VERSION as METRICS_VERSION } from "../spec/artifacts.js";
import { ARTIFACT_VERSION as METRICS_VERSION } from "../spec/artifacts.js";

/**
 * The principles a failure is revised under: those whose evidence names it (proposed for it, possibly merged),
 * then the most relevant other active principles by word overlap with the prompt, ties in pool order; when
 * none qualifies, the first `topK` active principles.
 */
export function principlesFor(attempt: Attempt, active: readonly Principle[], topK: number): Principle[] {
  const own = active.filter((p) => p.evidence.includes(attempt.id));
  const words = (text: string): Set<string> => new Set(text.toLowerCase().match(/[a-z0-9]+/g) ?? []);
  const promptWords = words(attempt.prompt);
  const scored = active
    .filter((p) => !own.includes(p))
    .map((p, index) => {
      const w = words(`${p.title} ${p.text}`);
      let overlap = 0;
      for (const x of w) if (promptWords.has(x)) overlap++;
      return { p, index, score: w.size === 0 ? 0 : overlap / w.size };
    })
    .filter((s) => s.score > 0)
    .sort((a, b) => b.score - a.score || a.index - b.index)
    .slice(0, topK)
    .map((s) => s.p);
  if (own.length + scored.length > 0) return [...own, ...scored];
  // Nothing cites or resembles this failure: revise it under the pool's first principles rather than not at all.
  return active.slice(0, Math.max(1, topK));
}

/** What the `retire` value of an iteration keeps: this iteration's figures, the run's so far, what was retired. */
const EfficacyValueSchema = z.object({
  iteration: z.record(z.string(), PrincipleEfficacySchema),
  cumulative: z.record(z.string(), PrincipleEfficacySchema),
  retired: z.array(z.object({ id: z.string(), reason: z.string() })),
});

/** The run's per-principle figures before this iteration: the latest earlier iteration that measured them. */
function previousEfficacy(checkpoint: StageCheckpoint, iteration: number): Record<string, PrincipleEfficacy> {
  for (let i = iteration - 1; i >= 0; i--) {
    const value = checkpoint.loadValue(i, "retire", EfficacyValueSchema);
    if (value) return value.cumulative;
  }
  return {};
}

function writeConstitution(ctx: RunContext, iteration: number, before: ConstitutionPool, after: ConstitutionPool): void {
  const snapshot = after.snapshot();
  ctx.layout.writeIteration(iteration, "constitution.json", renderConstitutionJson(snapshot, { iteration }));
  ctx.layout.writeIteration(iteration, "constitution.md", renderConstitutionMarkdown(snapshot, { iteration }));
  ctx.layout.writeIteration(iteration, "constitution.diff.md", diffConstitutions(before.snapshot(), snapshot).markdown);
}

export type { Verdict };
