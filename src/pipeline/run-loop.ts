import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { IterAlignConfig } from "../config/config-schema.js";
import { parseConfig, type LoadedConfig } from "../config/load-config.js";
import { ConstitutionPool } from "../constitutions/pool.js";
import { loadSeeds } from "../constitutions/seeds.js";
import { ModelSet } from "../providers/registry.js";
import { IterAlignError } from "../spec/errors.js";
import { TrainingExampleSchema, type TrainingExample } from "../spec/records.js";
import type { ModelRef } from "../train/trainer.js";
import { evaluateTarget, evaluatesAt } from "./evaluation.js";
import { baseModelRef, createTrainer, trainIteration } from "./training.js";
import type { GenerateObjectRequest, GenerateObjectResult, GenerateRequest, LanguageModel } from "../spec/language-model.js";
import { SqliteRunStore } from "../store/sqlite-run-store.js";
import type { Meter } from "../providers/middleware/accounting.js";
import { wrapModel } from "../providers/middleware/wrap.js";
import { StageCheckpoint } from "./checkpoint.js";
import { runIteration, type IterationMetrics } from "./iteration.js";
import { loadLoopPrompts } from "./prompt-source.js";
import { systemClock, type Clock, type LoopEvent, type LoopModels, type RunContext } from "./run-context.js";
import { jsonFile, RunLayout } from "./run-layout.js";

export interface RunLoopOptions {
  /** A fresh run from this config... */
  readonly loaded?: LoadedConfig;
  /** ...or continue this run (its stored config is used). */
  readonly resume?: { readonly runId: string; readonly storePath: string };
  readonly runId?: string;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: LoopEvent) => void;
  readonly clock?: Clock;
  /** Tallies every model call (for live tokens/s). */
  readonly meter?: Meter;
}

export interface RunSummary {
  readonly runId: string;
  readonly dir: string;
  readonly iterations: readonly IterationMetrics[];
  readonly stopReason: string;
  readonly activePrinciples: number;
}

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

/** Adds the active constitution as a system message: the `in-context` trainer (no weights change). */
function withConstitutionPrompt(model: LanguageModel, pool: ConstitutionPool): LanguageModel {
  const principles = pool.active();
  if (principles.length === 0) return model;
  const system = `Follow these principles in every answer:\n${principles.map((p, i) => `${i + 1}. ${p.text}`).join("\n")}`;
  const add = <R extends GenerateRequest>(request: R): R => ({
    ...request,
    messages: [{ role: "system" as const, content: system }, ...request.messages.filter((m) => m.role !== "system")],
  });
  return wrapModel(model, {
    generate: (request, next) => next(add(request)),
    generateObject: <T>(request: GenerateObjectRequest<T>, next: (r: GenerateObjectRequest<T>) => Promise<GenerateObjectResult<T>>) =>
      next(add(request)),
  });
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
  let config: IterAlignConfig;
  let baseDir: string;
  let store: SqliteRunStore;
  let runId: string;
  if (options.resume) {
    store = new SqliteRunStore(options.resume.storePath);
    runId = options.resume.runId;
    const run = store.getRun(runId);
    if (!run) {
      store.close();
      throw new IterAlignError("STORE_NOT_FOUND", `no run '${runId}' in ${options.resume.storePath}`);
    }
    const stored = StoredRunConfigSchema.parse(JSON.parse(run.configJson));
    config = parseConfig(stored.config, stored.configFile);
    baseDir = stored.baseDir;
  } else {
    const loaded = options.loaded;
    if (!loaded) throw new IterAlignError("USAGE", "runLoop needs a config or a run to resume");
    config = loaded.config;
    baseDir = loaded.baseDir;
    const storePath = path.resolve(baseDir, config.store.path);
    mkdirSync(path.dirname(storePath), { recursive: true });
    store = new SqliteRunStore(storePath);
    runId = options.runId ?? newRunId(clock);
    try {
      store.createRun({
        id: runId,
        configJson: JSON.stringify({ config, baseDir, configFile: loaded.file }),
        configHash: loaded.hash,
        createdAt: clock.isoNow(),
      });
    } catch (err) {
      store.close();
      throw err;
    }
  }
  const models = new ModelSet({
    config,
    baseDir,
    callLog: store,
    runId,
    ...(options.meter ? { meter: options.meter } : {}),
    ...(config.engine.maxThreads !== undefined ? { maxThreads: config.engine.maxThreads } : {}),
  });
  try {
    store.claimRun(runId, process.pid);
    store.updateRunStatus(runId, "running");
    const summary = await loop({ config, baseDir, store, runId, models, clock, signal, onEvent });
    store.updateRunStatus(runId, "finished", { finishedAt: clock.isoNow() });
    return summary;
  } catch (err) {
    const interrupted = signal.aborted;
    try {
      store.updateRunStatus(runId, interrupted ? "interrupted" : "failed", {
        finishedAt: clock.isoNow(),
        error: err instanceof Error ? err.message : String(err),
      });
    } catch {
      // The original error matters more than a failed status update (e.g. another process holds the run).
    }
    throw err;
  } finally {
    try {
      store.releaseRun(runId, process.pid);
    } catch {
      // Not held by us (the claim itself failed): nothing to release.
    }
    await models.close();
    store.close();
  }
}

async function loop(input: {
  config: IterAlignConfig;
  baseDir: string;
  store: SqliteRunStore;
  runId: string;
  models: ModelSet;
  clock: Clock;
  signal: AbortSignal;
  onEvent: (e: LoopEvent) => void;
}): Promise<RunSummary> {
  const { config, baseDir, store, runId, clock, signal, onEvent } = input;
  const layout = RunLayout.forRun(path.resolve(baseDir, config.runsDir), runId);
  const prompts = await loadLoopPrompts(config.data, baseDir);
  layout.write("split.json", jsonFile({ ...prompts.manifest, train: prompts.train.length, heldout: prompts.heldout.length }));
  layout.write("heldout.jsonl", prompts.heldout.map((p) => `${JSON.stringify({ id: p.id, dataset: p.dataset, text: p.text })}\n`).join(""));
  const loopModels = async (pool: ConstitutionPool): Promise<LoopModels> => ({
    target:
      config.train.trainer === "in-context"
        ? withConstitutionPrompt(await input.models.forRole("target"), pool)
        : await input.models.forRole("target"),
    oracle: await input.models.forRole("oracle"),
    judge: await input.models.forRole("judge"),
    ...(config.roles.embedder ? { embedder: await input.models.forRole("embedder") } : {}),
  });
  let pool = ConstitutionPool.empty();
  if (config.loop.seedConstitutions) {
    const seeds = await loadSeeds(path.resolve(baseDir, config.loop.seedConstitutions));
    pool = pool.addSeeds(seeds, { iteration: 0 }).pool;
  }
  const checkpoint = new StageCheckpoint(store, runId, clock);
  const trainer = createTrainer(config, baseDir);
  const base: ModelRef | undefined = trainer ? await baseModelRef(config, baseDir) : undefined;
  let current = base;
  const allExamples: TrainingExample[] = [];
  const targetsUsed: Array<{ iteration: number; model: string }> = [];
  const evaluate = async (iteration: number | null, target: LanguageModel): Promise<void> => {
    const started = clock.now();
    const name = iteration === null ? "eval (base)" : "eval";
    onEvent({ type: "stage-start", iteration: iteration ?? 0, stage: name, items: 0 });
    await evaluateTarget({
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
    onEvent({ type: "stage-end", iteration: iteration ?? 0, stage: name, items: 0, errors: 0, resumed: false, seconds: (clock.now() - started) / 1000, promptTokens: 0, completionTokens: 0 });
  };
  if (evaluatesAt(config, null, false)) await evaluate(null, await input.models.forRole("target"));
  const iterations: IterationMetrics[] = [];
  let clean = 0;
  let stopReason = "train split exhausted";
  const batchSize = config.loop.batchSize;
  for (let iteration = 0; iteration * batchSize < prompts.train.length; iteration++) {
    if (config.loop.maxIterations !== undefined && iteration >= config.loop.maxIterations) {
      stopReason = `reached loop.maxIterations (${config.loop.maxIterations})`;
      break;
    }
    signal.throwIfAborted();
    const batch = prompts.train.slice(iteration * batchSize, (iteration + 1) * batchSize);
    onEvent({ type: "iteration-start", iteration, batch: batch.length, remaining: prompts.train.length - iteration * batchSize });
    const done = checkpoint.loadValue(iteration, "iteration", IterationValueSchema);
    let metrics: IterationMetrics;
    let examples: TrainingExample[];
    if (current) targetsUsed.push({ iteration, model: current.model });
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
        models: await loopModels(pool),
        layout,
        clock,
        signal,
        onEvent,
        meter: input.models.meter,
      };
      const result = await runIteration(ctx, { iteration, batch, pool });
      metrics = result.metrics;
      pool = result.pool;
      examples = result.examples;
      checkpoint.saveValue(iteration, "iteration", { metrics, pool: pool.snapshot(), examples });
    }
    allExamples.push(...examples);
    let trained = config.train.trainer === "in-context" && pool.active().length > 0;
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
        examples,
        allExamples,
        signal,
        onProgress: (p) => {
          if (p.type === "step" && p.totalSteps !== undefined) onEvent({ type: "stage-progress", iteration, stage: "train", done: p.step, items: p.totalSteps });
        },
      });
      onEvent({ type: "stage-end", iteration, stage: "train", items: value.examples, errors: 0, resumed: false, seconds: (clock.now() - started) / 1000, promptTokens: 0, completionTokens: 0 });
      if (value.model.model !== current.model) {
        // The next iteration red-teams (and evaluation measures) the trained model.
        await input.models.rebindRole("target", value.model.model);
        current = value.model;
        trained = true;
      }
    }
    if (evaluatesAt(config, iteration, trained)) await evaluate(iteration, (await loopModels(pool)).target);
    iterations.push(metrics);
    onEvent({ type: "iteration-end", iteration, summary: metrics });
    const items = metrics.prompts + metrics.failures * 3;
    if (items > 0 && metrics.errors / items > config.loop.maxErrorRate) {
      throw new IterAlignError(
        "GENERATION_FAILED",
        `iteration ${iteration}: ${metrics.errors} of ${items} items failed, more than loop.maxErrorRate (${config.loop.maxErrorRate}); see runs/${runId}/iterations for the error rows`,
      );
    }
    clean = metrics.failures === 0 ? clean + 1 : 0;
    if (config.loop.stopAfterCleanBatches !== undefined && clean >= config.loop.stopAfterCleanBatches) {
      stopReason = `${clean} consecutive batches without failures`;
      break;
    }
    const used = store.callStats({ runId }).total;
    if (config.loop.tokenBudget !== undefined && used.promptTokens + used.completionTokens > config.loop.tokenBudget) {
      stopReason = `token budget of ${config.loop.tokenBudget} spent`;
      break;
    }
  }
  onEvent({ type: "stop", reason: stopReason });
  const summary: RunSummary = { runId, dir: layout.dir, iterations, stopReason, activePrinciples: pool.active().length };
  layout.write("constitution.json", jsonFile(pool.snapshot()));
  layout.write(
    "summary.json",
    jsonFile({
      runId,
      stopReason,
      iterations,
      activePrinciples: summary.activePrinciples,
      ...(trainer && current ? { trainer: trainer.name, targets: targetsUsed, finalTarget: current.model } : {}),
    }),
  );
  return summary;
}
