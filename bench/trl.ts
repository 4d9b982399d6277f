/**
 * LoRA with TRL against the embedded full trainer, on the ~100M generated model (Q8_0, 152k vocabulary), the same
 * 32 examples and epochs (equal tokens):
 * - peak resident memory of each training process (VmHWM, sampled every 50 ms from /proc);
 * - training throughput (example tokens per second, forward + backward);
 * - the mean log-likelihood per answer token, given the prompt, before and after (native scorer; the LoRA adapter is
 *   applied to the Q8_0 base as the llama-cpp hand-off serves it, the full trainer's F32 model against its F32 start).
 * Needs `npm run setup:trl` (the Python environment) and the llama.cpp build (scorer, finetune).
 * Usage: npm run bench:trl [-- --threads T --epochs E --examples N --shape 100m|0.5b --lora-precision fp32|bf16 --gradient-checkpointing]
 * (`--shape 0.5b` writes bench/results/trl-0.5b.json: a generated model of Qwen2.5-0.5B's shape, made once.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { GgmlType } from "../src/gguf/gguf-file.js";
import { writeRandomModel } from "../src/gguf/random-model.js";
import { ensureLlamaBuild } from "../src/native/llama-build.js";
import { defaultCacheDir, extractBundledFile } from "../src/native/llama-bundle.js";
import { NativeScorer } from "../src/providers/llama-cpp/native-scorer.js";
import type { ModelRef, TrainInput, TrainResult } from "../src/spec/trainer.js";
import { convertModel } from "../src/train/llama-cpp-finetune-process.js";
import { LlamaCppTrainer } from "../src/train/llama-cpp-trainer.js";
import { checkPythonEnvironment, resolvePython } from "../src/train/python-env.js";
import { ggufToHf } from "../src/train/trl-handoff.js";
import { cpuMallocEnv, TrlTrainer } from "../src/train/trl-trainer.js";
import { report, type Goal } from "./bench-utils.js";
import { examples } from "./sft-examples.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const THREADS = arg("threads", Math.min(os.availableParallelism(), 4));
const EPOCHS = arg("epochs", 2);
const EXAMPLES = arg("examples", 32);
/** `--shape 0.5b`: a generated model of Qwen2.5-0.5B's shape (24 layers, 896 wide) instead of the ~100M one. */
const SHAPE = args.includes("--shape") ? (args[args.indexOf("--shape") + 1] ?? "100m") : "100m";
/** `--lora-precision bf16`: the LoRA base in bf16 (the default, fp32, is what `precision: auto` takes on a CPU). */
const LORA_PRECISION = (args.includes("--lora-precision") ? args[args.indexOf("--lora-precision") + 1] : "fp32") as "fp32" | "bf16";
/** `--gradient-checkpointing`: the LoRA run recomputes activations in the backward pass (`gradientCheckpointing: true`). */
const GRADIENT_CHECKPOINTING = args.includes("--gradient-checkpointing");

/** Peak resident memory (VmHWM) of this process's descendants, sampled from /proc while `fn` runs. */
async function peakChildMemory<T>(fn: () => Promise<T>): Promise<{ result: T; peakBytes: number; process: string }> {
  const peaks = new Map<number, { bytes: number; name: string }>();
  const sample = (): void => {
    const parents = new Map<number, number>();
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const after = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        parents.set(Number(entry), Number(after[1]));
      } catch {
        continue;
      }
    }
    const isDescendant = (pid: number): boolean => {
      for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) if (p === process.pid) return true;
      return false;
    };
    for (const pid of parents.keys()) {
      if (!isDescendant(pid)) continue;
      try {
        const status = readFileSync(`/proc/${pid}/status`, "utf8");
        const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
        const name = /Name:\s+(\S+)/.exec(status)?.[1] ?? "?";
        if (hwm) {
          const bytes = Number(hwm[1]) * 1024;
          if (bytes > (peaks.get(pid)?.bytes ?? 0)) peaks.set(pid, { bytes, name });
        }
      } catch {
        continue;
      }
    }
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await fn();
    const top = [...peaks.values()].sort((a, b) => b.bytes - a.bytes)[0];
    return { result, peakBytes: top?.bytes ?? NaN, process: top?.name ?? "?" };
  } finally {
    clearInterval(timer);
  }
}

async function meanAnswerLogLikelihood(modelFile: string, adapters: readonly string[], data: ReadonlyArray<{ tokens: number[]; mask: number[] }>, scorer: string): Promise<number> {
  const native = await NativeScorer.start({ modelFile, adapters, contextSize: 512, threads: THREADS, sequences: 2, binary: scorer });
  try {
    let sum = 0;
    let tokens = 0;
    for (const d of data) {
      const split = d.mask.indexOf(1);
      sum += (await native.score(d.tokens.slice(0, split), [d.tokens.slice(split)])).scores[0]?.logprob ?? NaN;
      tokens += d.tokens.length - split;
    }
    return sum / tokens;
  } finally {
    await native.close();
  }
}

function shapeModel(): string {
  if (SHAPE === "100m") return ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
  if (SHAPE !== "0.5b") throw new Error(`--shape ${SHAPE}: 100m or 0.5b`);
  const out = path.join(defaultCacheDir(), "bench-models", "qwen2-0.5b-shape-q8_0.gguf");
  if (!existsSync(out)) {
    mkdirSync(path.dirname(out), { recursive: true });
    const { parameters } = writeRandomModel(
      {
        architecture: "qwen2",
        vocabFile: extractBundledFile("models/ggml-vocab-qwen2.gguf"),
        name: "iteralign bench: Qwen2.5-0.5B shape (random weights)",
        embeddingLength: 896,
        blockCount: 24,
        feedForwardLength: 4864,
        headCount: 14,
        headCountKv: 2,
        contextLength: 4096,
        weightType: GgmlType.Q8_0,
        seed: 5,
      },
      `${out}.tmp`,
    );
    renameSync(`${out}.tmp`, out);
    process.stderr.write(`generated ${(parameters / 1e6).toFixed(0)}M-parameter model ${out}\n`);
  }
  return out;
}

const file = shapeModel();
const build = await ensureLlamaBuild({ targets: ["iteralign-scorer", "iteralign-finetune"] });
const scorer = build.binaries["iteralign-scorer"]!;
const python = resolvePython(undefined, process.cwd());
const env = await checkPythonEnvironment(python);
const work = mkdtempSync(path.join(os.tmpdir(), "iteralign-bench-trl-"));
try {
  const model: ModelRef = { provider: "llama-cpp", model: file };
  const set = examples().slice(0, EXAMPLES);
  const input = (name: string): TrainInput => {
    const outDir = path.join(work, name, "iterations", "000", "train");
    mkdirSync(outDir, { recursive: true });
    return {
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
        if (p.type === "step") process.stderr.write(`${name} step ${p.step}/${p.totalSteps ?? "?"} loss ${p.loss?.toFixed(4) ?? "?"}\n`);
        else process.stderr.write(`${name}: ${p.type === "status" ? p.message : p.line}\n`);
      },
    };
  };
  process.stderr.write(`model ${file}, ${set.length} examples, ${EPOCHS} epochs, ${THREADS} threads, python ${python} (torch ${env.packages["torch"] ?? "?"})\n`);
  // The HF copy of the GGUF is made before measuring (once, cached): training starts from it.
  const hfBase = await ggufToHf(file, {
    python,
    cacheDir: defaultCacheDir(),
    signal: new AbortController().signal,
    status: (m) => process.stderr.write(`${m}\n`),
    dtype: LORA_PRECISION === "bf16" ? "bfloat16" : "float32",
  });

  const fullInput = input("full");
  const full = await peakChildMemory(() => new LlamaCppTrainer({ epochs: EPOCHS, learningRate: 1e-5, threads: THREADS }).train(fullInput));
  const fullLoss = JSON.parse(readFileSync(path.join(fullInput.outDir, "loss.json"), "utf8")) as { tokensPerSecond: number; seconds: number; trainedTokens: number; trainableParameters: number };
  const data = readFileSync(path.join(fullInput.outDir, "train-data.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { tokens: number[]; mask: number[] });

  const loraInput = input("lora");
  const lora = await peakChildMemory<TrainResult>(() =>
    new TrlTrainer({ baseModel: hfBase, epochs: EPOCHS, learningRate: 2e-4, batchSize: 1, lora: { rank: 16, alpha: 32, dropout: 0 }, threads: THREADS, seed: 0, precision: LORA_PRECISION, gradientCheckpointing: GRADIENT_CHECKPOINTING }).train(loraInput),
  );
  const run = JSON.parse(readFileSync(path.join(loraInput.outDir, "trl", "trl-result.json"), "utf8")) as {
    tokensSeen: number;
    phases: Array<{ seconds: number; trainableParameters: number; totalParameters: number }>;
    peakRssBytes: number;
    lossChunk?: number | null;
  };
  // What no torch-based trainer can go below on this model: the interpreter with the training libraries imported
  // (nothing else), and the base's weights at the precision the LoRA run keeps them in.
  const runtime = spawnSync(python, ["-c", "import re, torch, transformers, peft, datasets, trl\nfrom trl import SFTTrainer\nprint(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"], {
    encoding: "utf8",
    env: { ...process.env, ...cpuMallocEnv("cpu", process.env) },
  });
  const runtimeBytes = Number(runtime.stdout.trim().split("\n").at(-1)) * 1024;
  const weightBytes = readdirSync(hfBase)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((sum, f) => sum + statSync(path.join(hfBase, f)).size, 0);
  const loraSeconds = run.phases.reduce((s, p) => s + p.seconds, 0);
  const loraTokensPerSecond = run.tokensSeen / loraSeconds;

  const f32 = path.join(work, "start-f32.gguf");
  await convertModel({ binary: build.binaries["iteralign-finetune"]!, input: file, output: f32, type: "f32", threads: THREADS });
  const fullBefore = await meanAnswerLogLikelihood(f32, [], data, scorer);
  const fullAfter = await meanAnswerLogLikelihood(full.result.model.model, [], data, scorer);
  const loraBefore = await meanAnswerLogLikelihood(file, [], data, scorer);
  const loraAfter = await meanAnswerLogLikelihood(file, lora.result.model.adapters ?? [], data, scorer);
  const ratio = lora.peakBytes / full.peakBytes;
  const mib = (b: number): number => b / 2 ** 20;

  const goals: Goal[] = [
    { name: "LoRA (TRL) peak memory / full trainer peak memory, equal tokens", value: ratio, goal: "<= 0.333", holds: ratio <= 1 / 3 },
    { name: "full trainer: answer log-likelihood gain per token (nats)", value: fullAfter - fullBefore, goal: "> 0", holds: fullAfter - fullBefore > 0 },
    { name: "LoRA (TRL): answer log-likelihood gain per token (nats)", value: loraAfter - loraBefore, goal: "> 0", holds: loraAfter - loraBefore > 0 },
  ];
  report(
    SHAPE === "100m" ? "trl" : `trl-${SHAPE}`,
    [
      { name: "full trainer (iteralign-finetune) peak memory", value: mib(full.peakBytes), unit: "MiB" },
      { name: "LoRA (TRL, python) peak memory", value: mib(lora.peakBytes), unit: "MiB" },
      { name: "Python runtime alone (torch, transformers, peft, datasets, trl imported)", value: mib(runtimeBytes), unit: "MiB" },
      { name: "base weights the LoRA run holds (safetensors)", value: mib(weightBytes), unit: `MiB (${LORA_PRECISION})` },
      { name: "floor for any torch trainer: (runtime + weights) / full peak", value: (runtimeBytes + weightBytes) / full.peakBytes, unit: "" },
      { name: "full trainer throughput, example tokens", value: fullLoss.tokensPerSecond, unit: "tok/s" },
      { name: "LoRA (TRL) throughput, example tokens", value: loraTokensPerSecond, unit: "tok/s" },
      { name: "full trainer training seconds", value: fullLoss.seconds, unit: "s" },
      { name: "LoRA (TRL) training seconds", value: loraSeconds, unit: "s" },
      { name: "full trainer trainable parameters", value: fullLoss.trainableParameters / 1e6, unit: "M" },
      { name: "LoRA trainable parameters", value: (run.phases[0]?.trainableParameters ?? NaN) / 1e6, unit: "M" },
      { name: "full: log-likelihood before (F32 start) / after", value: fullBefore, unit: `nats -> ${fullAfter.toFixed(3)}` },
      { name: "LoRA: log-likelihood before (Q8_0 base) / after (base + adapter)", value: loraBefore, unit: `nats -> ${loraAfter.toFixed(3)}` },
    ],
    goals,
    {
      model: path.basename(file),
      shape: SHAPE,
      loraPrecision: LORA_PRECISION,
      gradientCheckpointing: GRADIENT_CHECKPOINTING,
      examples: set.length,
      epochs: EPOCHS,
      threads: THREADS,
      fullPeakProcess: full.process,
      loraPeakProcess: lora.process,
      loraPeakRssReportedByPython: run.peakRssBytes,
      lossChunk: run.lossChunk ?? null,
      torch: env.packages["torch"],
      trl: env.packages["trl"],
      cpu: os.cpus()[0]?.model,
      loadAverage: os.loadavg()[0],
    },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
