import { closeSync, existsSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { z } from "zod";
import { estimateTrainingMemory, trainingMemoryProblem } from "./memory-estimate.js";
import { ensureLlamaBuild } from "../native/llama-build.js";
import { IterAlignError } from "../spec/errors.js";
import type { TrainingExample } from "../spec/records.js";
import type { TokenizedExamples } from "./llama-cpp-examples.js";
import { runFinetune, type FinetuneEvent } from "./llama-cpp-finetune-process.js";
import { sha256OfFiles } from "./trainer.js";
import type { ModelRef, Trainer, TrainInput, TrainResult } from "../spec/trainer.js";

export { LlamaCppTrainerOptionsSchema, type LlamaCppTrainerOptions, type LlamaCppTrainerOptionsInput } from "./llama-cpp-trainer-options.js";
import type { LlamaCppTrainerOptions, LlamaCppTrainerOptionsInput } from "./llama-cpp-trainer-options.js";
import { LlamaCppTrainerOptionsSchema } from "./llama-cpp-trainer-options.js";

/** What a finished training records in the trainer state, so a resumed run does not train again. */
const FinishedSchema = z.object({ dataHash: z.string(), result: z.record(z.string(), z.unknown()) });

/** File names inside the iteration's training directory. */
export const LLAMA_CPP_TRAINER_FILES = {
  model: "model.gguf",
  data: "train-data.jsonl",
  log: "train.log",
  loss: "loss.json",
} as const;

/**
 * The training window (positions computed per step, padding included) is the longest example rounded up to
 * this, so examples of similar lengths share one graph size. Padding positions are masked out of the loss.
 */
const WINDOW_STEP = 32;

/**
 * Full fine-tuning of a GGUF model on the iteration's SFT examples with `iteralign-finetune` (llama.cpp's
 * training API, AdamW, one example per step, loss on the answer and end-of-turn tokens only). A quantized
 * model is converted to F32 for training. The new model is `outDir/model.gguf`; it appears only when training
 * succeeded, so a failure (divergence, out of memory, abort) leaves the previous model in use.
 * An iteration without new examples returns the model it red-teamed, unchanged.
 */
export class LlamaCppTrainer implements Trainer {
  readonly name = "llama-cpp";
  readonly options: LlamaCppTrainerOptions;
  private readonly cacheDir: string | undefined;

  private readonly machineMemory: number | undefined;

  constructor(options: LlamaCppTrainerOptionsInput = {}, deps: { readonly cacheDir?: string; readonly machineMemoryBytes?: number } = {}) {
    const parsed = LlamaCppTrainerOptionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new IterAlignError("CONFIG_INVALID", `llama-cpp trainer options: ${z.prettifyError(parsed.error)}`);
    }
    this.options = parsed.data;
    this.cacheDir = deps.cacheDir;
    this.machineMemory = deps.machineMemoryBytes;
  }

  async train(input: TrainInput): Promise<TrainResult> {
    const o = this.options;
    const threads = o.threads ?? availableParallelism();
    const settings: Record<string, unknown> = { ...o, threads };
    if (input.examples.length === 0) {
      input.onProgress({ type: "status", message: "no new training examples: the model stays as it is" });
      return { model: input.current, trainer: this.name, settings, dataHash: sha256OfFiles([]), examples: 0 };
    }
    const start = o.warmStart === "previous" ? input.current : input.base;
    const examples: readonly TrainingExample[] = o.warmStart === "previous" ? input.examples : input.allExamples;
    const startFile = localModel(start);
    const files = Object.fromEntries(
      Object.entries(LLAMA_CPP_TRAINER_FILES).map(([k, v]) => [k, path.join(path.resolve(input.outDir), v)]),
    ) as Record<keyof typeof LLAMA_CPP_TRAINER_FILES, string>;

    input.onProgress({ type: "status", message: `tokenizing ${examples.length} examples with ${path.basename(startFile)}'s chat template` });
    // Loaded on use: tokenizing needs the engine, which configuring a run must not load.
    const { tokenizeExamples, writeTokenizedExamples } = await import("./llama-cpp-examples.js");
    const tokenized = await tokenizeExamples(startFile, examples, { chatTemplate: o.chatTemplate, maxTokens: o.contextLength });
    for (const s of tokenized.skipped) input.onProgress({ type: "log", line: `skipped example ${s.id}: ${s.reason}` });
    if (tokenized.examples.length === 0) {
      throw new IterAlignError("TRAINING_FAILED", `no example fits in contextLength ${o.contextLength}: every prompt is longer`, {
        details: { kind: "input" },
      });
    }
    writeTokenizedExamples(files.data, tokenized.examples);
    const dataHash = sha256OfFiles([files.data]);
    const window = Math.ceil(Math.max(...tokenized.examples.map((e) => e.tokens.length)) / WINDOW_STEP) * WINDOW_STEP;
    // Refuse what cannot fit before any training starts (and before the F32 copy of a quantized model is made).
    const memory = estimateTrainingMemory(startFile, window);
    if (o.memoryCheck && o.gpu === "cpu") {
      const problem = trainingMemoryProblem(memory, this.machineMemory);
      if (problem) throw new IterAlignError("TRAINING_FAILED", `${path.basename(startFile)}: ${problem}. The previous model is kept; train.llamaCpp.memoryCheck: false tries anyway.`, { details: { kind: "memory", estimateBytes: memory.bytes } });
    }
    Object.assign(settings, {
      startModel: startFile,
      memoryEstimateBytes: memory.bytes,
      trainingWindow: window,
      chatTemplateUsed: tokenized.chatTemplate,
      endOfTurn: tokenized.endOfTurn,
      lossOn: "answer and end-of-turn tokens",
      optimizer: "adamw",
      examplesPerStep: 1,
    });

    const finished = FinishedSchema.safeParse(input.state.get("llama-cpp"));
    if (finished.success && finished.data.dataHash === dataHash && existsSync(files.model)) {
      input.onProgress({ type: "status", message: "training of this iteration already finished: reusing its model" });
      return finished.data.result as unknown as TrainResult;
    }
    // A model file without a finished record is a leftover of an interrupted attempt: never hand it on.
    for (const leftover of [files.model, ...temporaryFiles(input.outDir)]) rmSync(leftover, { force: true });

    const binary = await this.binary(input);
    const temporary = path.join(path.resolve(input.outDir), `${LLAMA_CPP_TRAINER_FILES.model}.tmp`);
    const args = finetuneTrainArgs(o, {
      model: startFile,
      data: files.data,
      out: temporary,
      workDir: path.resolve(input.outDir),
      window,
      threads,
    });
    const log = openSync(files.log, "a");
    const events: FinetuneEvent[] = [];
    try {
      writeSync(log, `# ${new Date().toISOString()} iteralign-finetune ${args.join(" ")}\n`);
      input.onProgress({
        type: "status",
        message: `training ${tokenized.examples.length} examples x ${o.epochs} epochs (window ${window} tokens)`,
      });
      await runFinetune({
        binary,
        args,
        signal: input.signal,
        onLine: (line) => writeSync(log, `${line}\n`),
        onEvent: (event) => {
          events.push(event);
          reportEvent(event, input);
        },
      });
      renameSync(temporary, files.model);
    } catch (err) {
      for (const leftover of temporaryFiles(input.outDir)) rmSync(leftover, { force: true });
      writeSync(log, `# failed: ${err instanceof Error ? err.message : String(err)}\n`);
      throw err;
    } finally {
      closeSync(log);
    }

    const result = this.result({ events, files, settings, dataHash, tokenized });
    input.state.set("llama-cpp", { dataHash, result });
    return result;
  }

  private async binary(input: TrainInput): Promise<string> {
    const build = await ensureLlamaBuild({
      targets: ["iteralign-finetune"],
      gpu: this.options.gpu,
      ...(this.cacheDir ? { cacheDir: this.cacheDir } : {}),
      onLine: (line) => {
        if (/^\[\s*\d+%\]|^cloning|^configuring|^waiting/.test(line)) input.onProgress({ type: "log", line });
      },
    });
    const binary = build.binaries["iteralign-finetune"];
    if (binary === undefined) throw new IterAlignError("BUILD_FAILED", "the llama.cpp build has no iteralign-finetune");
    return binary;
  }

  private result(run: {
    events: readonly FinetuneEvent[];
    files: Record<keyof typeof LLAMA_CPP_TRAINER_FILES, string>;
    settings: Record<string, unknown>;
    dataHash: string;
    tokenized: TokenizedExamples;
  }): TrainResult {
    const steps = run.events.flatMap((e) => (e.event === "step" ? [e] : []));
    const epochs = run.events.flatMap((e) => (e.event === "epoch" ? [e] : []));
    const done = run.events.find((e) => e.event === "done");
    const start = run.events.find((e) => e.event === "start");
    const lossCurve = steps.flatMap((s) => (s.loss === null ? [] : [{ step: s.step, loss: s.loss }]));
    const finalLoss = epochs.at(-1)?.loss ?? undefined;
    writeFileSync(
      run.files.loss,
      `${JSON.stringify(
        {
          steps: steps.map(({ event: _event, ...s }) => s),
          epochs: epochs.map(({ event: _event, ...e }) => e),
          answerTokensPerEpoch: start?.event === "start" ? start.answerTokensPerEpoch : undefined,
          trainableParameters: start?.event === "start" ? start.trainableParameters : undefined,
          examples: run.tokenized.examples.map((e) => ({ id: e.id, tokens: e.tokens.length, answerTokens: e.answerTokens, truncated: e.truncated })),
          skipped: run.tokenized.skipped,
          ...(done?.event === "done" ? { trainedTokens: done.trainedTokens, tokensPerSecond: done.tokensPerSecond, seconds: done.seconds } : {}),
        },
        null,
        2,
      )}\n`,
    );
    const model: ModelRef = { provider: "llama-cpp", model: run.files.model };
    return {
      model,
      trainer: this.name,
      settings: run.settings,
      dataHash: run.dataHash,
      examples: run.tokenized.examples.length,
      metrics: {
        ...(finalLoss === undefined ? {} : { finalLoss }),
        ...(done?.event === "done" && done.tokensPerSecond !== undefined ? { tokensPerSecond: done.tokensPerSecond } : {}),
        ...(done?.event === "done" ? { seconds: done.seconds } : {}),
        lossCurve,
      },
    };
  }
}

/**
 * The command line of `iteralign-finetune train` for these options. `--gpu-layers` is passed only with
 * `gpu: cuda` (all layers, -1, unless `gpuLayers` says otherwise), so a CPU run's command line is unchanged.
 */
export function finetuneTrainArgs(
  o: LlamaCppTrainerOptions,
  run: { model: string; data: string; out: string; workDir: string; window: number; threads: number },
): string[] {
  return [
    "train",
    ...["--model", run.model, "--data", run.data, "--out", run.out, "--work-dir", run.workDir],
    ...["--epochs", String(o.epochs), "--lr", String(o.learningRate), "--schedule", o.schedule],
    ...["--warmup", String(o.warmupRatio), "--ctx", String(run.window), "--seed", String(o.seed)],
    ...["--threads", String(run.threads), "--out-type", o.quantize === "q8_0" ? "q8_0" : "f32"],
    ...(o.gpu === "cuda" ? ["--gpu-layers", String(o.gpuLayers ?? -1)] : []),
  ];
}

function reportEvent(event: FinetuneEvent, input: TrainInput): void {
  if (event.event === "step") {
    input.onProgress({
      type: "step",
      step: event.step,
      totalSteps: event.totalSteps,
      epoch: event.epoch,
      ...(event.loss === null ? {} : { loss: event.loss }),
      tokensPerSecond: event.tokensPerSecond,
    });
  } else if (event.event === "convert") {
    input.onProgress({ type: "status", message: `converted ${event.from.join("/")} weights to F32 for training (${event.seconds.toFixed(1)} s)` });
  } else if (event.event === "error") {
    input.onProgress({ type: "log", line: `iteralign-finetune: ${event.kind}: ${event.message}` });
  }
}

function localModel(ref: ModelRef): string {
  if (ref.provider !== "llama-cpp") {
    throw new IterAlignError("USAGE", `the llama-cpp trainer trains local GGUF models; ${ref.provider} model ${ref.model} is not one`);
  }
  if (!path.isAbsolute(ref.model) || !existsSync(ref.model)) {
    throw new IterAlignError("MODEL_NOT_FOUND", `the model to train, ${ref.model}, is not an existing absolute GGUF path`);
  }
  return ref.model;
}

/** Files the native trainer writes before it finishes (see iteralign-finetune.cpp). */
function temporaryFiles(outDir: string): string[] {
  const dir = path.resolve(outDir);
  return [
    path.join(dir, `${LLAMA_CPP_TRAINER_FILES.model}.tmp`),
    path.join(dir, `${LLAMA_CPP_TRAINER_FILES.model}.tmp.f32.tmp`),
    path.join(dir, "finetune-input-f32.gguf.tmp"),
  ];
}
