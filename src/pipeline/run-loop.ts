import { loadJudgeLabels } from "../datasets/judge-labels.js";
import { calibrateJudge } from "../eval/judge-calibration.js";
import { SummaryFileSchema, type SummaryFile } from "../spec/artifacts.js";
import type { EvalTextSet } from "../datasets/contamination.js";
import { evalTextSets } from "../eval/eval-texts.js";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { IterAlignConfig } from "../config/config-schema.js";
import { parseConfig, type LoadedConfig } from "../config/load-config.js";
import { ConstitutionPool } from "../constitutions/pool.js";
import { loadSeeds } from "../constitutions/seeds.js";
import { ModelSet, preflightModels } from "../providers/registry.js";
import { IterAlignError } from "../spec/errors.js";
import { TrainingExampleSchema, type TrainingExample } from "../spec/records.js";
import type { ModelRef } from "../spec/trainer.js";
import { evaluateTarget, evaluatesAt } from "./evaluation.js";
import { baseModelRef, createTrainer, trainIteration } from "./training.js";
import type { LanguageModel } from "../spec/language-model.js";
import { SqliteRunStore } from "../store/sqlite-run-store.js";
import type { RunStore } from "../store/run-store.js";
import { requireCapability, type Capability, type Role } from "../spec/language-model.js";
import { guardNeeds } from "../stages/guard-judge.js";
import { attackStage, batchShares, type AttackBatch } from "./attack-stage.js";
import { validateRunId } from "./run-id.js";
import { yieldToEventLoop } from "../util/event-loop.js";
import { errorsByStage, stopReason } from "./stop-rules.js";
import { checkBudget } from "./cost-budget.js";
import { roundUsd } from "./iteration-stages.js";
import type { Meter } from "../providers/middleware/accounting.js";
import { StageCheckpoint } from "./checkpoint.js";
import { METRICS_VERSION, runIteration, type IterationMetrics } from "./iteration.js";
import { loadLoopPrompts, type LoopPrompts } from "./prompt-source.js";
import { systemClock, type Clock, type LoopEvent, type LoopModels, type RunContext, type StageBudget } from "./run-context.js";
import { jsonFile, jsonlFile, RunLayout } from "./run-layout.js";

/** The models the loop asks for by role; a {@link ModelSet} by default, injectable for tests and embedding. */
export interface LoopModelSource {
  readonly meter: Meter;
  forRole(role: Role): Promise<LanguageModel>;
  /** A model of the config by its name (the judges of `roles.judges`). */
  byName?(name: string): Promise<LanguageModel>;
  /** Binds a role to other weights (a trained model) for the rest of the run. */
  rebindRole(role: Role, model: ModelRef): Promise<void>;
  close(): Promise<void>;
}

export interface RunLoopOptions {
  /** A fresh run from this config... */
  readonly loaded?: LoadedConfig;
  /** ...or continue this run (its stored config is used); `storePath` is needed unless a store is injected. */
  readonly resume?: { readonly runId: string; readonly storePath?: string };
  readonly runId?: string;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: LoopEvent) => void;
  readonly clock?: Clock;
  /** Tallies every model call (for live tokens/s). */
  readonly meter?: Meter;
  /** The run store; default: the SQLite file the config names. An injected store is not closed by the loop. */
  readonly store?: RunStore;
  /** Told about long waits (batch jobs being created, found again, ended). */
  readonly notify?: (message: string) => void;
  /** Overrides of the stored config's settings (a resumed run with a raised budget). */
  readonly overrides?: { readonly costBudget?: number };
  /** Makes the role models; default: a {@link ModelSet} over the config, caching in the store. */
  readonly models?: (input: { config: IterAlignConfig; baseDir: string; store: RunStore; runId: string; meter?: Meter }) => LoopModelSource;
}

export interface RunSummary {
  readonly runId: string;
  readonly dir: string;
  readonly iterations: readonly IterationMetrics[];
  readonly stopReason: string;
  readonly activePrinciples: number;
  /** Items that ended in errors, per stage, over the whole run. */
  readonly errorsByStage: Readonly<Record<string, number>>;
  /** Dollars the run's model answers cost at the models' prices. */
  readonly costUsd: number;
  /** Gated examples no training used: fewer than the trainer's minimum were left at the end. */
  readonly untrainedExamples: number;
  /** The trainer's minimum examples per training (when a weight trainer ran). */
  readonly minTrainingExamples?: number;
}

/** The models of `roles.judges`, in order. */
async function judgePanelModels(source: LoopModelSource, names: readonly string[]): Promise<LanguageModel[]> {
  if (!source.byName) throw new IterAlignError("USAGE", "roles.judges: this model source cannot load models by name");
  const byName = source.byName.bind(source);
  const models: LanguageModel[] = [];
  for (const name of names) models.push(await byName(name));
  return models;
}

const CalibrationSummarySchema = SummaryFileSchema.shape.calibration.unwrap();

const StoredRunConfigSchema = z.object({ config: z.unknown(), baseDir: z.string(), configFile: z.string() });
const IterationValueSchema = z.object({
  metrics: z.unknown(),
  pool: z.object({ principles: z.array(z.unknown()) }),
  examples: z.array(TrainingExampleSchema).default([]),
});

/** A new run id: UTC time stamp and a random suffix, e.g. `20261127-041500-a1b2c3`. */
export function newRunId(clock: Clock = systemClock): string {
  const stamp = clock.isoNow().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `${stamp}-${randomBytes(3).toString("hex")}`;
}

/** What a run needs before its first model call, checked before anything is written. */
interface Prepared {
  readonly config: IterAlignConfig;
  readonly baseDir: string;
  readonly prompts: LoopPrompts;
  readonly layout: RunLayout;
}

/**
 * Loads the data and checks the output directory: user errors (a bad dataset, an empty red-team set, a runs
 * directory that cannot be made) fail here, before a run is created or a model is loaded.
 */
async function prepare(config: IterAlignConfig, baseDir: string, runId: string, checkModels: boolean): Promise<Prepared> {
  if (checkModels) await preflightModels(config, baseDir);
  const prompts = await loadLoopPrompts(config.data, baseDir);
  if (prompts.train.length === 0) {
    const sets = config.data.redTeam.map((ref) => ("bundled" in ref ? `bundled:${ref.bundled}` : path.resolve(baseDir, ref.file))).join(", ");
    throw new IterAlignError(
      "DATA_INVALID",
      `the red-team set is empty: ${sets} gave ${prompts.train.length + prompts.heldout.length} prompts and none is left for the train split (data.heldoutFraction ${config.data.heldoutFraction}${config.data.limit !== undefined ? `, data.limit ${config.data.limit}` : ""})`,
      { details: { sets } },
    );
  }
  return { config, baseDir, prompts, layout: RunLayout.forRun(path.resolve(baseDir, config.runsDir), runId) };
}

/** Makes the runs directory, or fails naming it (before the run is created). */
function makeRunsDir(layout: RunLayout): void {
  const runsDir = path.dirname(layout.dir);
  try {
    mkdirSync(runsDir, { recursive: true });
  } catch (err) {
    throw new IterAlignError("CONFIG_INVALID", `runsDir: cannot create ${runsDir}: ${(err as Error).message}`, { cause: err, details: { runsDir } });
  }
}

/** The capability each role must offer, checked once every role's model is loaded and before any call. */
async function checkRoles(config: IterAlignConfig, models: LoopModelSource): Promise<void> {
  const needs: Array<[Role, Capability, string]> = [
    ["target", "generate", "the red-team and self-correct stages"],
    ["oracle", "generateObject", "the propose stage"],
    ["judge", "generateObject", "the judge and gate stages"],
  ];
  if (config.roles.embedder) needs.push(["embedder", "embed", "constitution merging (roles.embedder)"]);
  if (config.eval.benchmarks.trim() !== "" && config.eval.mode === "loglik" && /\b(truthfulqa|hhh|mc:)/.test(config.eval.benchmarks)) {
    needs.push(["target", "scoreContinuations", `log-likelihood evaluation (eval.benchmarks: ${config.eval.benchmarks})`]);
  }
  for (const [role, capability, neededBy] of needs) requireCapability(await models.forRole(role), capability, `roles.${role}: ${neededBy}`);
  if (config.loop.attacks && config.roles.attacker) {
    const [attacker] = await judgePanelModels(models, [config.roles.attacker]);
    requireCapability(attacker as LanguageModel, "generateObject", `roles.attacker (${config.roles.attacker}): writing attacks (loop.attacks)`);
  }
  // A panel judge answers our verdict schema, or (a guard) classifies with its own template.
  for (const [i, name] of (config.roles.judges ?? []).entries()) {
    const judge = await judgePanelModels(models, [name]).then((m) => m[0] as LanguageModel);
    const needed = judge.guard ? guardNeeds(judge.guard) : "generateObject";
    requireCapability(judge, needed, `roles.judges[${i}] (${name}): ${judge.guard ? `a guard of style ${judge.guard.style}` : "the judge stage"}`);
  }
}

/**
 * Runs the IterAlign loop: batches of train prompts, one iteration each, until the train split is exhausted
 * or a stop rule fires. Every finished model call and stage output is committed to the store before anything
 * depends on it, so `resume` after a crash at any moment finishes the run without repeating finished calls,
 * and (greedy, fixed seeds) writes the same bytes an uninterrupted run writes.
 */
export async function runLoop(options: RunLoopOptions): Promise<RunSummary> {
  const clock = options.clock ?? systemClock;
  const onEvent = options.onEvent ?? (() => undefined);
  const signal = options.signal ?? new AbortController().signal;
  const ownsStore = options.store === undefined;
  let store: RunStore | undefined = options.store;
  let runId: string;
  let prepared: Prepared;
  try {
    if (options.resume) {
      runId = validateRunId(options.resume.runId);
      store ??= openStore(options.resume.storePath);
      const run = store.getRun(runId);
      if (!run) throw new IterAlignError("STORE_NOT_FOUND", `no run '${runId}' in ${options.resume.storePath ?? "the store"}`);
      const stored = StoredRunConfigSchema.parse(JSON.parse(run.configJson));
      prepared = await prepare(parseConfig(stored.config, stored.configFile), stored.baseDir, runId, options.models === undefined);
      makeRunsDir(prepared.layout);
    } else {
      const loaded = options.loaded;
      if (!loaded) throw new IterAlignError("USAGE", "runLoop needs a config or a run to resume");
      runId = validateRunId(options.runId ?? newRunId(clock));
      prepared = await prepare(loaded.config, loaded.baseDir, runId, options.models === undefined);
      store ??= openStore(path.resolve(loaded.baseDir, loaded.config.store.path));
      makeRunsDir(prepared.layout);
      store.createRun({
        id: runId,
        configJson: JSON.stringify({ config: loaded.config, baseDir: loaded.baseDir, configFile: loaded.file }),
        configHash: loaded.hash,
        createdAt: clock.isoNow(),
      });
    }
  } catch (err) {
    if (ownsStore) store?.close();
    throw err;
  }
  const costBudget = options.overrides?.costBudget ?? prepared.config.loop.costBudget;
  if (costBudget !== undefined) prepared = { ...prepared, config: { ...prepared.config, loop: { ...prepared.config.loop, costBudget } } };
  const { config, baseDir } = prepared;
  const makeModels =
    options.models ??
    ((input) =>
      new ModelSet({
        config: input.config,
        baseDir: input.baseDir,
        callLog: input.store,
        batchLog: input.store,
        dataDir: path.dirname(path.resolve(input.baseDir, input.config.store.path)),
        ...(options.notify ? { notify: options.notify } : {}),
        runId: input.runId,
        ...(input.meter ? { meter: input.meter } : {}),
        ...(input.config.engine.maxThreads !== undefined ? { maxThreads: input.config.engine.maxThreads } : {}),
      }));
  const models = makeModels({ config, baseDir, store, runId, ...(options.meter ? { meter: options.meter } : {}) });
  const runStore = store;
  try {
    runStore.claimRun(runId, process.pid);
    runStore.updateRunStatus(runId, "running");
    await checkRoles(config, models);
    const summary = await loop({ ...prepared, store: runStore, runId, models, clock, signal, onEvent });
    runStore.updateRunStatus(runId, "finished", { finishedAt: clock.isoNow() });
    return summary;
  } catch (err) {
    // A budget stop is a clean stop, like Ctrl-C: nothing failed, and --resume (with more budget) goes on.
    const interrupted = signal.aborted || (err instanceof IterAlignError && err.code === "BUDGET_EXCEEDED");
    try {
      runStore.updateRunStatus(runId, interrupted ? "interrupted" : "failed", {
        finishedAt: clock.isoNow(),
        error: err instanceof Error ? err.message : String(err),
      });
    } catch {
      // The original error matters more than a failed status update (e.g. another process holds the run).
    }
    throw err;
  } finally {
    try {
      runStore.releaseRun(runId, process.pid);
    } catch {
      // Not held by us (the claim itself failed): nothing to release.
    }
    await models.close();
    if (ownsStore) runStore.close();
  }
}

function openStore(storePath: string | undefined): RunStore {
  if (storePath === undefined) throw new IterAlignError("USAGE", "runLoop: resuming needs resume.storePath or an injected store");
  return new SqliteRunStore(storePath);
}

async function loop(input: Prepared & {
  store: RunStore;
  runId: string;
  models: LoopModelSource;
  clock: Clock;
  signal: AbortSignal;
  onEvent: (e: LoopEvent) => void;
}): Promise<RunSummary> {
  const { config, baseDir, store, runId, clock, signal, onEvent, prompts, layout } = input;
  layout.write("split.json", jsonFile({ ...prompts.manifest, train: prompts.train.length, heldout: prompts.heldout.length }));
  layout.write("heldout.jsonl", jsonlFile(prompts.heldout.map((p) => ({ id: p.id, dataset: p.dataset, text: p.text }))));
  const loopModels = async (): Promise<LoopModels> => ({
    target: await input.models.forRole("target"),
    oracle: await input.models.forRole("oracle"),
    judge: await input.models.forRole("judge"),
    ...(config.roles.embedder ? { embedder: await input.models.forRole("embedder") } : {}),
    ...(config.roles.judges ? { judges: await judgePanelModels(input.models, config.roles.judges) } : {}),
  });
  const budget = config.loop.costBudget === undefined ? undefined : stageBudget(config.loop.costBudget, store, runId, clock);
  let pool = ConstitutionPool.empty();
  if (config.loop.seedConstitutions) {
    const seeds = await loadSeeds(path.resolve(baseDir, config.loop.seedConstitutions));
    pool = pool.addSeeds(seeds, { iteration: 0 }).pool;
  }
  const checkpoint = new StageCheckpoint(store, runId, clock);
  let evalSets: Promise<EvalTextSet[]> | undefined;
  const evalTexts = (): Promise<EvalTextSet[]> =>
    (evalSets ??= evalTextSets({
      benchmarks: [config.eval.benchmarks, config.export.checkAgainst].filter((b) => b.trim() !== "").join(","),
      heldout: prompts.heldout,
      baseDir,
      ...(config.eval.hhhFile !== undefined ? { hhhFile: config.eval.hhhFile } : {}),
      ...(config.eval.bigbenchDir !== undefined ? { bigbenchDir: config.eval.bigbenchDir } : {}),
    }));
  const trainer = createTrainer(config, baseDir);
  const base: ModelRef | undefined = trainer ? await baseModelRef(config, baseDir) : undefined;
  let current = base;
  const allExamples: TrainingExample[] = [];
  /** Examples not trained on yet: carried over while fewer than the trainer's minimum. */
  let pending: TrainingExample[] = [];
  const targetsUsed: Array<{ iteration: number; model: string; adapters?: readonly string[] }> = [];
  const evaluate = async (iteration: number | null, target: LanguageModel): Promise<void> => {
    const started = clock.now();
    const name = iteration === null ? "eval (base)" : "eval";
    const before = input.models.meter.snapshot().totals;
    onEvent({ type: "stage-start", iteration: iteration ?? 0, stage: name, items: 0 });
    const report = await evaluateTarget({
      config,
      baseDir,
      checkpoint,
      layout,
      iteration,
      trainer: config.train.trainer,
      models: { model: target, judge: await input.models.forRole("judge") },
      heldout: prompts.heldout,
      signal,
      onProgress: (benchmark, done, total) =>
        onEvent({ type: "stage-progress", iteration: iteration ?? 0, stage: `${name} ${benchmark}`, done, items: total }),
    });
    const after = input.models.meter.snapshot().totals;
    const items = report.results.reduce((n, r) => n + r.items.length, 0);
    const errors = report.results.reduce((n, r) => n + r.items.filter((i) => i.details.error !== undefined).length, 0);
    const costUsd = after.costUsd - before.costUsd;
    onEvent({
      type: "stage-end",
      iteration: iteration ?? 0,
      stage: name,
      items,
      errors,
      // Answered from the checkpoint without a model call: a resumed run's evaluation.
      resumed: after.calls === before.calls && items > 0,
      seconds: (clock.now() - started) / 1000,
      promptTokens: after.promptTokens - before.promptTokens,
      completionTokens: after.completionTokens - before.completionTokens,
      ...(costUsd > 0 ? { costUsd } : {}),
    });
  };
  /** `loop.calibration`: the judge against human labels, once per run (kept in the store, so a resume reads it back). */
  const calibrate = async (spec: NonNullable<IterAlignConfig["loop"]["calibration"]>): Promise<SummaryFile["calibration"]> => {
    const stored = checkpoint.loadValue(0, "calibration", CalibrationSummarySchema);
    if (stored) return stored;
    const data = await loadJudgeLabels(spec.data, baseDir);
    const items = spec.limit !== undefined ? data.items.slice(0, spec.limit) : data.items;
    const started = clock.now();
    const before = input.models.meter.snapshot().totals;
    onEvent({ type: "stage-start", iteration: 0, stage: "calibration", items: items.length });
    const report = await calibrateJudge(items, {
      judge: await input.models.forRole("judge"),
      preset: spec.preset ?? config.loop.judge,
      dataName: data.name,
      signal,
      onProgress: (done, total) => onEvent({ type: "stage-progress", iteration: 0, stage: "calibration", done, items: total }),
    });
    const after = input.models.meter.snapshot().totals;
    const { items: judged, ...figures } = report;
    layout.write("calibration.json", jsonFile(figures));
    layout.write("calibration-items.jsonl", jsonlFile(judged));
    const o = report.overall;
    const summaryFigures = {
      data: report.data.name,
      judge: report.judge,
      preset: report.preset,
      judgeConfigHash: report.judgeConfigHash,
      n: o.n,
      errors: report.errors,
      accuracy: o.accuracy,
      precision: o.precision,
      recall: o.recall,
      f1: o.f1,
      kappa: o.kappa,
    };
    checkpoint.saveValue(0, "calibration", summaryFigures);
    onEvent({
      type: "stage-end",
      iteration: 0,
      stage: "calibration",
      items: items.length,
      errors: report.errors,
      resumed: false,
      seconds: (clock.now() - started) / 1000,
      promptTokens: after.promptTokens - before.promptTokens,
      completionTokens: after.completionTokens - before.completionTokens,
    });
    return summaryFigures;
  };
  const calibration = config.loop.calibration ? await calibrate(config.loop.calibration) : undefined;
  if (evaluatesAt(config, null, false)) await evaluate(null, await input.models.forRole("target"));
  const iterations: IterationMetrics[] = [];
  let clean = 0;
  let stop: string | undefined;
  const batchSize = config.loop.batchSize;
  // With loop.attacks part of each batch is fresh attacks and replays: the train split advances by the rest.
  const staticSize = config.loop.attacks ? batchShares(batchSize, config.loop.attacks).static : batchSize;
  for (let iteration = 0; stop === undefined; iteration++) {
    await yieldToEventLoop();
    signal.throwIfAborted();
    const batch = prompts.train.slice(iteration * staticSize, (iteration + 1) * staticSize);
    onEvent({ type: "iteration-start", iteration, batch: batch.length, remaining: prompts.train.length - iteration * staticSize });
    const done = checkpoint.loadValue(iteration, "iteration", IterationValueSchema);
    let metrics: IterationMetrics;
    let examples: TrainingExample[];
    if (current) targetsUsed.push({ iteration, model: current.model, ...(current.adapters && current.adapters.length > 0 ? { adapters: current.adapters } : {}) });
    if (done) {
      metrics = done.metrics as IterationMetrics;
      pool = ConstitutionPool.fromSnapshot(done.pool);
      examples = done.examples;
    } else {
      const ctx: RunContext = {
        runId,
        config,
        baseDir,
        store,
        models: await loopModels(),
        layout,
        clock,
        signal,
        onEvent,
        meter: input.models.meter,
        ...(budget ? { budget } : {}),
        evalTexts,
      };
      let attacks: AttackBatch | undefined;
      if (config.loop.attacks) {
        // Adaptive red teaming: fresh attacks against the current target and replays of earlier failures join the batch.
        const started = clock.now();
        const before = input.models.meter.snapshot().totals;
        onEvent({ type: "stage-start", iteration, stage: "attacks", items: 0 });
        const attacker = config.roles.attacker ? (await judgePanelModels(input.models, [config.roles.attacker]))[0] as LanguageModel : ctx.models.oracle;
        attacks = await attackStage(ctx, { iteration, staticBatch: batch, splitPrompts: [...prompts.train, ...prompts.heldout], attacker, checkpoint });
        const after = input.models.meter.snapshot().totals;
        onEvent({
          type: "stage-end",
          iteration,
          stage: "attacks",
          items: attacks.summary.generated,
          errors: attacks.summary.dropped["screen-error"] ?? 0,
          resumed: after.calls === before.calls,
          seconds: (clock.now() - started) / 1000,
          promptTokens: after.promptTokens - before.promptTokens,
          completionTokens: after.completionTokens - before.completionTokens,
        });
      }
      const result = await runIteration(ctx, { iteration, batch: attacks ? [...batch, ...attacks.prompts] : batch, pool, ...(attacks ? { attacks } : {}) });
      metrics = result.metrics;
      pool = result.pool;
      examples = result.examples;
      checkpoint.saveValue(iteration, "iteration", { metrics, pool: pool.snapshot(), examples });
    }
    allExamples.push(...examples);
    pending.push(...examples);
    let trained = false;
    if (trainer && base && current) {
      const started = clock.now();
      onEvent({ type: "stage-start", iteration, stage: "train", items: examples.length });
      const value = await trainIteration({
        trainer,
        checkpoint,
        layout,
        runId,
        iteration,
        base,
        current,
        examples: pending,
        allExamples,
        principles: pool.active(),
        signal,
        onProgress: (p) => {
          if (p.type === "step" && p.totalSteps !== undefined) onEvent({ type: "stage-progress", iteration, stage: "train", done: p.step, items: p.totalSteps });
        },
      });
      onEvent({ type: "stage-end", iteration, stage: "train", items: value.examples, errors: 0, resumed: false, seconds: (clock.now() - started) / 1000, promptTokens: 0, completionTokens: 0 });
      if (value.deferred === undefined) pending = [];
      if (
        value.model.model !== current.model ||
        value.model.systemPrompt !== current.systemPrompt ||
        value.model.revision !== current.revision ||
        JSON.stringify(value.model.adapters ?? []) !== JSON.stringify(current.adapters ?? [])
      ) {
        // The next iteration red-teams (and evaluation measures) the trained model.
        await input.models.rebindRole("target", value.model);
        current = value.model;
        trained = true;
      }
    }
    if (evaluatesAt(config, iteration, trained)) await evaluate(iteration, (await loopModels()).target);
    iterations.push(metrics);
    onEvent({ type: "iteration-end", iteration, summary: metrics });
    clean = metrics.failures === 0 ? clean + 1 : 0;
    const used = store.callStats({ runId }).total;
    stop = stopReason(
      {
        iterationsDone: iteration + 1,
        cleanBatches: clean,
        tokensUsed: used.promptTokens + used.completionTokens,
        remainingPrompts: prompts.train.length - (iteration + 1) * staticSize,
      },
      config.loop,
    );
  }
  const errors = errorsByStage(iterations.map((m) => m.errorsByStage ?? {}));
  const costByStage = Object.fromEntries(Object.entries(errorsByStage(iterations.map((m) => m.costByStage ?? {}))).map(([k, v]) => [k, roundUsd(v)]));
  const costUsd = roundUsd(iterations.reduce((sum, m) => sum + (m.costUsd ?? 0), 0));
  onEvent({ type: "stop", reason: stop, errorsByStage: errors });
  const summary: RunSummary = {
    runId,
    dir: layout.dir,
    iterations,
    stopReason: stop,
    activePrinciples: pool.active().length,
    errorsByStage: errors,
    costUsd,
    untrainedExamples: trainer ? pending.length : 0,
    ...(trainer ? { minTrainingExamples: trainer.minExamples ?? 1 } : {}),
  };
  layout.write("constitution.json", jsonFile(pool.snapshot()));
  layout.write(
    "summary.json",
    jsonFile({
      version: METRICS_VERSION,
      runId,
      stopReason: stop,
      iterations,
      activePrinciples: summary.activePrinciples,
      errorsByStage: errors,
      costUsd,
      costByStage,
      ...(trainer && current ? { trainer: trainer.name, targets: targetsUsed, finalTarget: current.model, ...(current.adapters && current.adapters.length > 0 ? { finalAdapters: current.adapters } : {}), untrainedExamples: pending.length } : {}),
      ...(calibration ? { calibration } : {}),
    }),
  );
  return summary;
}

/**
 * `loop.costBudget` over the store: the run's spending is the cost of its calls that reached a provider (over
 * every process of the run), and a stage's estimate is its mean cost per item in this run's earlier iterations.
 */
function stageBudget(limit: number, store: RunStore, runId: string, clock: Clock): StageBudget {
  const checkpoint = new StageCheckpoint(store, runId, clock);
  return {
    beforeStage(iteration, stage, items) {
      let cost = 0;
      let counted = 0;
      for (let i = 0; i < iteration; i++) {
        const summary = checkpoint.summary(i, stage);
        if (typeof summary?.costUsd === "number" && typeof summary.items === "number" && summary.items > 0) {
          cost += summary.costUsd;
          counted += summary.items;
        }
      }
      const { stop } = checkBudget({
        budget: limit,
        spent: store.callStats({ runId }).total.costUsd,
        stage,
        iteration,
        items,
        perItem: counted > 0 ? cost / counted : undefined,
      });
      if (stop) throw stop;
    },
  };
}
