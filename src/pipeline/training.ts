import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { IterAlignConfig } from "../config/config-schema.js";
import { modelRefOf } from "../providers/registry.js";
import { IterAlignError } from "../spec/errors.js";
import type { Principle, TrainingExample } from "../spec/records.js";
import { CommandTrainer } from "../train/command-trainer.js";
import { InContextTrainer } from "../train/in-context-trainer.js";
import { LlamaCppTrainer } from "../train/llama-cpp-trainer.js";
import { OpenAITrainer, OpenAITrainerOptionsSchema } from "../train/openai-trainer.js";
import { TrlTrainer } from "../train/trl-trainer.js";
import { apiKeyOf, baseUrls } from "../providers/openai-compatible/provider.js";
import type { ModelRef, Trainer, TrainerState, TrainFiles, TrainProgress, TrainResult } from "../spec/trainer.js";
import { EXPORTERS, type ExportFormat } from "../stages/export.js";
import { EXPORT_FILES } from "./iteration.js";
import type { StageCheckpoint } from "./checkpoint.js";
import { jsonFile, type RunLayout } from "./run-layout.js";

/** The trainer the config names, or undefined for `none`. */
export function createTrainer(config: IterAlignConfig, baseDir: string): Trainer | undefined {
  const train = config.train;
  switch (train.trainer) {
    case "in-context":
      return new InContextTrainer();
    case "llama-cpp":
    {
      const target = config.models[config.roles.target];
      const chatTemplate = target?.provider === "llama-cpp" ? target.chatTemplate : undefined;
      // Training renders prompts the way the target's generation does unless the user set it.
      return new LlamaCppTrainer({ ...(chatTemplate ? { chatTemplate } : {}), ...(train.llamaCpp ?? {}) });
    }
    case "trl": {
      const target = config.models[config.roles.target];
      if (target?.provider === "llama-cpp" && train.trl?.handoffCommand) {
        throw new IterAlignError("CONFIG_INVALID", "train.trl.handoffCommand: a llama-cpp target loads GGUF files itself; the hand-off command is for servers (vLLM, SGLang, TGI)");
      }
      const urls = target?.provider === "openai-compatible" ? baseUrls(target) : undefined;
      const apiKey = target?.provider === "openai-compatible" ? apiKeyOf(config.roles.target, target.apiKeyEnv, process.env) : undefined;
      return new TrlTrainer(train.trl ?? {}, {
        baseDir,
        target: { provider: target?.provider ?? "llama-cpp", ...(urls ? { baseUrls: urls } : {}), ...(apiKey ? { apiKey } : {}) },
      });
    }
    case "openai":
      return new OpenAITrainer(train.openai ?? OpenAITrainerOptionsSchema.parse({}));
    case "command":
      if (!train.command) throw new IterAlignError("CONFIG_INVALID", "train.command: the command trainer needs train.command.command");
      return new CommandTrainer({ ...train.command, ...(train.command.cwd ? { cwd: path.resolve(baseDir, train.command.cwd) } : { cwd: baseDir }) });
    default:
      return undefined;
  }
}

/** The config's target as a trainer sees it (its provider resolves the reference: a GGUF path, an API model id). */
export function baseModelRef(config: IterAlignConfig, baseDir: string): Promise<ModelRef> {
  return modelRefOf(config, "target", baseDir);
}

export const TrainValueSchema = z.object({
  model: z.object({
    provider: z.string(),
    model: z.string(),
    revision: z.string().optional(),
    adapters: z.array(z.string()).readonly().optional(),
    systemPrompt: z.string().optional(),
  }),
  trainer: z.string(),
  settings: z.record(z.string(), z.unknown()),
  dataHash: z.string(),
  examples: z.number().int().nonnegative(),
  metrics: z.unknown().optional(),
  /** Examples carried over to a later iteration: fewer than the trainer's minimum (nothing was trained). */
  deferred: z.number().int().nonnegative().optional(),
});
export type TrainValue = z.infer<typeof TrainValueSchema>;

/**
 * Durable trainer state in the run store. Records are immutable, so each `set` adds a new version of the key;
 * `get` returns the newest.
 */
function storeState(checkpoint: StageCheckpoint, iteration: number): TrainerState {
  const versions = new Map<string, number>();
  const name = (key: string, version: number): string => `train-state:${key}:${version}`;
  const latest = (key: string): number => {
    let v = versions.get(key);
    if (v === undefined) {
      v = 0;
      while (checkpoint.loadValue(iteration, name(key, v + 1), z.object({ value: z.unknown() })) !== undefined) v++;
      versions.set(key, v);
    }
    return v;
  };
  return {
    get(key) {
      const v = latest(key);
      return v === 0 ? undefined : checkpoint.loadValue(iteration, name(key, v), z.object({ value: z.unknown() }))?.value;
    },
    set(key, value) {
      const v = latest(key) + 1;
      checkpoint.saveValue(iteration, name(key, v), { value });
      versions.set(key, v);
    },
  };
}

/**
 * Trains after an iteration (or loads the finished training from the store): returns the model the next
 * iteration uses. The result, the trainer's settings and the data hash are written to
 * `iterations/NNN/train/result.json` and kept in the store; a failed training keeps the previous model and
 * the run can resume (the trainer's durable state lets a hosted job be picked up).
 */
export async function trainIteration(input: {
  trainer: Trainer;
  checkpoint: StageCheckpoint;
  layout: RunLayout;
  runId: string;
  iteration: number;
  base: ModelRef;
  current: ModelRef;
  /** This iteration's examples and those carried over from earlier iterations (not trained on yet). */
  examples: readonly TrainingExample[];
  allExamples: readonly TrainingExample[];
  /** The active principles after this iteration. */
  principles: readonly Principle[];
  signal: AbortSignal;
  onProgress: (progress: TrainProgress) => void;
}): Promise<TrainValue> {
  const { checkpoint, layout, iteration } = input;
  const done = checkpoint.loadValue(iteration, "train", TrainValueSchema);
  if (done) return done;
  const dir = layout.iterationDir(iteration);
  const outDir = path.join(dir, "train");
  mkdirSync(outDir, { recursive: true });
  let result: TrainResult;
  let deferred: number | undefined;
  const minExamples = input.trainer.minExamples ?? 1;
  if (input.examples.length === 0 && input.trainer.needsExamples !== false) {
    // Nothing passed the gate: nothing to train on; the next iteration red-teams the same model.
    result = { model: input.current, trainer: input.trainer.name, settings: {}, dataHash: "", examples: 0 };
  } else if (input.trainer.needsExamples !== false && input.examples.length < minExamples) {
    // Too few for this trainer (OpenAI needs 10): carried over, trained once enough have accumulated.
    deferred = input.examples.length;
    result = {
      model: input.current,
      trainer: input.trainer.name,
      settings: { deferred: `${input.examples.length} examples, fewer than the ${minExamples} the ${input.trainer.name} trainer needs; carried over to the next iteration` },
      dataHash: "",
      examples: 0,
    };
  } else {
    const own = input.examples.every((e) => e.iteration === iteration);
    result = await input.trainer.train({
      runId: input.runId,
      iteration,
      base: input.base,
      current: input.current,
      examples: input.examples,
      allExamples: input.allExamples,
      principles: input.principles,
      files: own ? iterationFiles(dir) : writeCombinedExports(path.join(outDir, "data"), input.examples),
      outDir,
      state: storeState(checkpoint, iteration),
      signal: input.signal,
      onProgress: input.onProgress,
    });
  }
  if (result.model.provider !== input.current.provider) {
    throw new IterAlignError(
      "TRAINING_FAILED",
      `iteration ${iteration}: the ${result.trainer} trainer returned a ${result.model.provider} model, but the target is a ${input.current.provider} model`,
    );
  }
  const value: TrainValue = {
    model: result.model,
    trainer: result.trainer,
    settings: { ...result.settings },
    dataHash: result.dataHash,
    examples: result.examples,
    ...(result.metrics ? { metrics: result.metrics } : {}),
    ...(deferred !== undefined ? { deferred } : {}),
  };
  layout.writeIteration(iteration, "train/result.json", jsonFile({ ...value, startedFrom: input.current }));
  checkpoint.saveValue(iteration, "train", value);
  return value;
}

/** The export files an iteration wrote (see `EXPORT_FILES`). */
function iterationFiles(dir: string): TrainFiles {
  return {
    sharegpt: path.join(dir, EXPORT_FILES.sharegpt),
    trlSft: path.join(dir, EXPORT_FILES["trl-sft"]),
    openaiChat: path.join(dir, EXPORT_FILES["openai-chat"]),
    trlPreference: path.join(dir, EXPORT_FILES["trl-preference"]),
    openaiPreference: path.join(dir, EXPORT_FILES["openai-preference"]),
  };
}

/** Every export format of examples from several iterations (carried over), written under `dir`. */
function writeCombinedExports(dir: string, examples: readonly TrainingExample[]): TrainFiles {
  mkdirSync(dir, { recursive: true });
  const files = iterationFiles(dir);
  const byFormat: Record<ExportFormat, string> = {
    sharegpt: files.sharegpt,
    "trl-sft": files.trlSft,
    "openai-chat": files.openaiChat,
    "trl-preference": files.trlPreference,
    "openai-preference": files.openaiPreference,
  };
  for (const [format, exporter] of Object.entries(EXPORTERS) as Array<[ExportFormat, (e: readonly TrainingExample[]) => string]>) {
    writeFileSync(byFormat[format], exporter(examples));
  }
  return files;
}
