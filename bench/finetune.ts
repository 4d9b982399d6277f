/**
 * Weight-training benchmark on the ~100M generated model (Q8_0, 152k vocabulary): the `llama-cpp` trainer runs
 * one IterAlign iteration's SFT (32 synthetic examples, the trainer's default settings) and reports
 * - training throughput: example tokens (prompt + answer, padding excluded) per second, forward + backward;
 * - the mean log-likelihood per answer token, given the prompt, before and after training (native scorer).
 * The "before" model is the F32 conversion training starts from (the same weights as the Q8_0 file, without
 * Q8_0's activation quantization), so the gain is training's alone; the Q8_0 file's score is shown too.
 * Usage: npm run bench:finetune [-- --threads T --epochs E --lr X]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { ensureLlamaBuild } from "../src/native/llama-build.js";
import { NativeScorer } from "../src/providers/llama-cpp/native-scorer.js";
import { convertModel } from "../src/train/llama-cpp-finetune-process.js";
import { LlamaCppTrainer } from "../src/train/llama-cpp-trainer.js";
import type { ModelRef, TrainProgress } from "../src/spec/trainer.js";
import { report, type Goal } from "./bench-utils.js";
import { examples } from "./sft-examples.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const THREADS = arg("threads", Math.min(os.availableParallelism(), 4));
const EPOCHS = arg("epochs", 2);
const LEARNING_RATE = arg("lr", 1e-5);

interface DataLine {
  tokens: number[];
  mask: number[];
}

/** Mean log-likelihood per answer token (mask 1) given the prompt (mask 0), by the native scorer. */
async function meanAnswerLogLikelihood(modelFile: string, data: readonly DataLine[], scorer: string): Promise<number> {
  const native = await NativeScorer.start({ modelFile, contextSize: 512, threads: THREADS, sequences: 2, binary: scorer });
  try {
    let sum = 0;
    let tokens = 0;
    for (const d of data) {
      const split = d.mask.indexOf(1);
      const result = await native.score(d.tokens.slice(0, split), [d.tokens.slice(split)]);
      sum += result.scores[0]?.logprob ?? NaN;
      tokens += d.tokens.length - split;
    }
    return sum / tokens;
  } finally {
    await native.close();
  }
}

const file = ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
const build = await ensureLlamaBuild({ targets: ["iteralign-scorer", "iteralign-finetune"] });
const scorer = build.binaries["iteralign-scorer"]!;
const work = mkdtempSync(path.join(os.tmpdir(), "iteralign-bench-finetune-"));
try {
  const outDir = path.join(work, "iteration-000");
  mkdirSync(outDir);
  const model: ModelRef = { provider: "llama-cpp", model: file };
  const set = examples();
  const steps: TrainProgress[] = [];
  process.stderr.write(`model ${file}, ${set.length} examples, ${EPOCHS} epochs, lr ${LEARNING_RATE}, ${THREADS} threads\n`);
  const trainer = new LlamaCppTrainer({ epochs: EPOCHS, learningRate: LEARNING_RATE, threads: THREADS });
  const started = performance.now();
  const result = await trainer.train({
    runId: "bench",
    iteration: 0,
    base: model,
    current: model,
    examples: set,
    allExamples: set,
    principles: [],
    files: { sharegpt: "", trlSft: "", openaiChat: "", trlPreference: "", openaiPreference: "" },
    outDir,
    state: { get: () => undefined, set: () => undefined },
    signal: new AbortController().signal,
    onProgress: (p) => {
      if (p.type === "step") {
        steps.push(p);
        process.stderr.write(`step ${p.step}/${p.totalSteps} loss ${p.loss?.toFixed(4) ?? "?"} ${p.tokensPerSecond?.toFixed(1) ?? "?"} tok/s\n`);
      } else process.stderr.write(`${p.type === "status" ? p.message : p.line}\n`);
    },
  });
  const wall = (performance.now() - started) / 1000;
  const loss = JSON.parse(readFileSync(path.join(outDir, "loss.json"), "utf8")) as {
    trainedTokens: number;
    seconds: number;
    tokensPerSecond: number;
    trainableParameters: number;
    examples: { tokens: number }[];
  };
  const window = Number(result.settings.trainingWindow);
  const data = readFileSync(path.join(outDir, "train-data.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as DataLine);

  const f32 = path.join(work, "start-f32.gguf");
  await convertModel({ binary: build.binaries["iteralign-finetune"]!, input: file, output: f32, type: "f32", threads: THREADS });
  const beforeQ8 = await meanAnswerLogLikelihood(file, data, scorer);
  const before = await meanAnswerLogLikelihood(f32, data, scorer);
  const after = await meanAnswerLogLikelihood(result.model.model, data, scorer);
  const gain = after - before;
  const stepsRun = steps.length;
  const answerTokensPerSecond = loss.trainedTokens / loss.seconds;
  const positionsPerSecond = (stepsRun * window) / loss.seconds;

  const goals: Goal[] = [
    { name: "mean answer log-likelihood gain per token (nats)", value: gain, goal: "> 0", holds: gain > 0 },
    {
      name: `training time of a ${set.length}-example, ${EPOCHS}-epoch iteration (s)`,
      value: loss.seconds,
      goal: "<= 600 (fits a laptop iteration)",
      holds: loss.seconds <= 600,
    },
  ];
  report(
    "finetune",
    [
      { name: "training throughput, example tokens (prompt + answer)", value: loss.tokensPerSecond, unit: "tok/s" },
      { name: "training throughput, answer tokens (with loss)", value: answerTokensPerSecond, unit: "tok/s" },
      { name: "training throughput, window positions (with padding)", value: positionsPerSecond, unit: "pos/s" },
      { name: "optimizer steps", value: stepsRun, unit: "steps" },
      { name: "training seconds", value: loss.seconds, unit: "s" },
      { name: "trainer wall time (tokenize, convert to F32, train, write)", value: wall, unit: "s" },
      { name: "answer log-likelihood per token, before (F32 start)", value: before, unit: "nats" },
      { name: "answer log-likelihood per token, before (Q8_0 file)", value: beforeQ8, unit: "nats" },
      { name: "answer log-likelihood per token, after", value: after, unit: "nats" },
      { name: "final epoch mean loss", value: result.metrics?.finalLoss ?? NaN, unit: "nats" },
    ],
    goals,
    {
      model: path.basename(file),
      examples: set.length,
      epochs: EPOCHS,
      learningRate: LEARNING_RATE,
      threads: THREADS,
      trainingWindow: window,
      trainableParameters: loss.trainableParameters,
      cpu: os.cpus()[0]?.model,
      loadAverage: os.loadavg()[0],
    },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
