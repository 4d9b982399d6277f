import { z } from "zod";
import { ConstitutionPool, type PoolChanges } from "../constitutions/pool.js";
import { lexicalSimilarity, embeddingSimilarity, oracleConfirm, DEFAULT_EMBEDDING_THRESHOLD, DEFAULT_LEXICAL_THRESHOLD } from "../constitutions/similarity.js";
import { diffConstitutions, renderConstitutionJson, renderConstitutionMarkdown } from "../constitutions/render.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { AttemptSchema, GateDecisionSchema, RevisionSchema, VerdictSchema, type Attempt, type Principle, type TrainingExample, type Verdict } from "../spec/records.js";
import { EXPORTERS, type ExportFormat, gate, gateStats, judge, okRecords, propose, ProposalSchema, redTeam, selfCorrect, toTrainingExamples, type StageItem } from "../stages/index.js";
import { StageCheckpoint } from "./checkpoint.js";
import { jsonFile, jsonlFile } from "./run-layout.js";
import type { RunContext } from "./run-context.js";

/** What one iteration did; deterministic (no times), written to `metrics.json`. */
export interface IterationMetrics {
  readonly iteration: number;
  readonly prompts: number;
  readonly attempts: number;
  readonly failures: number;
  readonly failureRate: number;
  readonly errors: number;
  readonly principlesAdded: number;
  readonly principlesMerged: number;
  readonly principlesRetired: number;
  readonly revisions: number;
  readonly gatePassRate: number | null;
  readonly fixed: number;
  readonly gateRejections: Record<string, number>;
  readonly trainingExamples: number;
  readonly skipped: boolean;
}

const EXPORT_FILES: Readonly<Record<ExportFormat, string>> = {
  sharegpt: "sft.sharegpt.jsonl",
  "trl-sft": "sft.trl.jsonl",
  "openai-chat": "sft.openai.jsonl",
  "trl-preference": "preference.trl.jsonl",
  "openai-preference": "preference.openai.jsonl",
};

const PoolValueSchema = z.object({ principles: z.array(z.unknown()) });
const GateOutcomeRecordSchema = GateDecisionSchema;

/**
 * Runs (or, after a crash, finishes) one iteration: red-team the batch, judge, propose constitutions from the
 * failures, merge them into the pool, self-correct, gate, export. Each stage's outputs are committed before
 * the next stage starts; a stage already committed is loaded instead of re-run.
 */
export async function runIteration(
  ctx: RunContext,
  input: { iteration: number; batch: readonly RedTeamPrompt[]; pool: ConstitutionPool },
): Promise<{ metrics: IterationMetrics; pool: ConstitutionPool; examples: TrainingExample[] }> {
  const { iteration, batch } = input;
  const { config, models, signal } = ctx;
  const checkpoint = new StageCheckpoint(ctx.store, ctx.runId, ctx.clock);
  const stage = async <T>(name: string, schema: z.ZodType<T>, items: number, run: (onItem: () => void) => Promise<StageItem<T>[]>): Promise<StageItem<T>[]> => {
    const started = ctx.clock.now();
    const tokensBefore = ctx.meter?.snapshot().totals;
    ctx.onEvent({ type: "stage-start", iteration, stage: name, items });
    const loaded = checkpoint.load(iteration, name, schema);
    let done = 0;
    const onItem = (): void => {
      done++;
      ctx.onEvent({ type: "stage-progress", iteration, stage: name, done, items });
    };
    const out = loaded ?? (await run(onItem));
    const tokensAfter = ctx.meter?.snapshot().totals;
    // Time and engine tokens of the stage, kept in the store (not in the run's files, which must not depend on
    // how fast a machine is or on what a resumed run found in the cache).
    const usage = {
      seconds: (ctx.clock.now() - started) / 1000,
      promptTokens: (tokensAfter?.promptTokens ?? 0) - (tokensBefore?.promptTokens ?? 0),
      completionTokens: (tokensAfter?.completionTokens ?? 0) - (tokensBefore?.completionTokens ?? 0),
    };
    if (!loaded) checkpoint.save(iteration, name, out as StageItem<T & { id: string }>[], usage);
    const errors = out.filter((i) => i.status === "error").length;
    ctx.onEvent({ type: "stage-end", iteration, stage: name, items: out.length, errors, resumed: loaded !== undefined, ...usage });
    return out;
  };

  const attemptItems = await stage("red-team", AttemptSchema, batch.length, (onItem) =>
    redTeam(batch, { target: models.target, iteration, params: config.loop.redTeam, signal, onItem }),
  );
  const attempts = okRecords(attemptItems);
  const verdictItems = await stage("judge", VerdictSchema, attempts.length, (onItem) =>
    judge(attempts, { judge: models.judge, iteration, preset: config.loop.judge, signal, onItem }),
  );
  const verdicts = okRecords(verdictItems);
  const byAttempt = new Map(attempts.map((a) => [a.id, a]));
  const failures = verdicts
    .filter((v) => !v.verdict.pass)
    .map((verdict) => ({ attempt: byAttempt.get(verdict.subjectId) as Attempt, verdict }))
    .filter((f) => f.attempt !== undefined);
  let errors = attemptItems.length - attempts.length + (verdictItems.length - verdicts.length);
  const layoutDir = (name: string, content: string): void => {
    ctx.layout.writeIteration(iteration, name, content);
  };
  layoutDir("attempts.jsonl", jsonlFile(attemptItems));
  layoutDir("verdicts.jsonl", jsonlFile(verdictItems));

  const base = { iteration, prompts: batch.length, attempts: attempts.length, failures: failures.length };
  const failureRate = attempts.length === 0 ? 0 : failures.length / attempts.length;
  if (failures.length === 0) {
    // A batch without failures teaches nothing: recorded, and the constitution carried over unchanged.
    const metrics: IterationMetrics = { ...base, failureRate, errors, principlesAdded: 0, principlesMerged: 0, principlesRetired: 0, revisions: 0, gatePassRate: null, fixed: 0, gateRejections: {}, trainingExamples: 0, skipped: true };
    writeConstitution(ctx, iteration, input.pool, input.pool);
    layoutDir("metrics.json", jsonFile(metrics));
    return { metrics, pool: input.pool, examples: [] };
  }

  const proposalItems = await stage("propose", ProposalSchema, 1, (onItem) =>
    propose(failures, { oracle: models.oracle, iteration, signal, onItem }),
  );
  errors += proposalItems.length - okRecords(proposalItems).length;
  const proposals = okRecords(proposalItems).flatMap((p) => p.constitutions);
  layoutDir("proposals.json", jsonFile(proposalItems));

  let pool = input.pool;
  let changes: PoolChanges | undefined;
  const savedPool = checkpoint.loadValue(iteration, "pool", PoolValueSchema.extend({ changes: z.unknown() }));
  if (savedPool) {
    pool = ConstitutionPool.fromSnapshot({ principles: savedPool.principles });
    changes = savedPool.changes as PoolChanges;
  } else {
    const update = await pool.mergeProposals(proposals, {
      iteration,
      similarity: models.embedder ? embeddingSimilarity(models.embedder) : lexicalSimilarity(),
      confirm: oracleConfirm(models.oracle),
      threshold: config.loop.mergeThreshold ?? (models.embedder ? DEFAULT_EMBEDDING_THRESHOLD : DEFAULT_LEXICAL_THRESHOLD),
      signal,
    });
    pool = update.pool;
    changes = update.changes;
    checkpoint.saveValue(iteration, "pool", { ...pool.snapshot(), changes });
  }
  writeConstitution(ctx, iteration, input.pool, pool);

  const active = pool.active();
  const items = failures.map(({ attempt }) => ({ attempt, principles: principlesFor(attempt, active, config.loop.topKPrinciples) }));
  const revisionItems = await stage("self-correct", RevisionSchema, items.length, (onItem) =>
    selfCorrect(items.filter((i) => i.principles.length > 0), { target: models.target, iteration, mode: config.loop.selfCorrect, signal, onItem }),
  );
  const revisions = okRecords(revisionItems);
  errors += revisionItems.length - revisions.length;
  layoutDir("revisions.jsonl", jsonlFile(revisionItems));

  const gateItems = await stage("gate", GateOutcomeRecordSchema, revisions.length, async (onItem) => {
    const outcomes = await gate(
      revisions.map((revision) => ({ revision, attempt: byAttempt.get(revision.attemptId) as Attempt })),
      { judge: models.judge, iteration, signal, onItem },
    );
    return outcomes.map((o) => ({ status: "ok" as const, record: o.decision }));
  });
  const decisions = okRecords(gateItems);
  const stats = gateStats(decisions);
  layoutDir("gate.jsonl", jsonlFile(decisions));

  const examples = toTrainingExamples({ decisions, revisions, attempts, principles: pool.principles(), iteration });
  for (const [format, exporter] of Object.entries(EXPORTERS) as Array<[ExportFormat, (e: typeof examples) => string]>) {
    layoutDir(EXPORT_FILES[format], exporter(examples));
  }
  const metrics: IterationMetrics = {
    ...base,
    failureRate,
    errors,
    principlesAdded: changes?.added.length ?? 0,
    principlesMerged: changes?.merged.length ?? 0,
    principlesRetired: changes?.retired.length ?? 0,
    revisions: revisions.length,
    gatePassRate: decisions.length === 0 ? null : stats.passRate,
    fixed: decisions.filter((d) => d.accepted).length,
    gateRejections: Object.fromEntries(Object.entries(stats.byReason).filter(([reason]) => reason !== "pass")),
    trainingExamples: examples.length,
    skipped: false,
  };
  layoutDir("metrics.json", jsonFile(metrics));
  return { metrics, pool, examples };
}

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

function writeConstitution(ctx: RunContext, iteration: number, before: ConstitutionPool, after: ConstitutionPool): void {
  const snapshot = after.snapshot();
  ctx.layout.writeIteration(iteration, "constitution.json", renderConstitutionJson(snapshot, { iteration }));
  ctx.layout.writeIteration(iteration, "constitution.md", renderConstitutionMarkdown(snapshot, { iteration }));
  ctx.layout.writeIteration(iteration, "constitution.diff.md", diffConstitutions(before.snapshot(), snapshot).markdown);
}

export type { Verdict };
