import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtureModels, FIXTURE_MODELS, fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { countParameters } from "../../src/gguf/random-model.js";
import { GgufType, readGgufHeader } from "../../src/gguf/gguf-file.js";
import { ensureLlamaBuild } from "../../src/native/llama-build.js";
import { acquireModel } from "../../src/providers/llama-cpp/engine.js";
import { NativeScorer } from "../../src/providers/llama-cpp/native-scorer.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { TrainingExample } from "../../src/spec/records.js";
import { convertModel, runFinetune } from "../../src/train/llama-cpp-finetune-process.js";
import { estimateTrainingMemory, trainingMemoryProblem } from "../../src/train/memory-estimate.js";
import { LlamaCppTrainer, LlamaCppTrainerOptionsSchema, type LlamaCppTrainerOptionsInput } from "../../src/train/llama-cpp-trainer.js";
import type { ModelRef, TrainInput, TrainProgress, TrainResult } from "../../src/spec/trainer.js";

const MODEL = fixtureModelPath("tiny-qwen2");
// One thread: on a shared 2-core machine, ggml's OpenMP workers spin at barriers and two threads run slower.
const THREADS = 1;

function example(id: string, prompt: string, chosen: string): TrainingExample {
  return { id, iteration: 0, attemptId: `a-${id}`, revisionId: `r-${id}`, messages: [{ role: "user", content: prompt }], chosen, rejected: "Sure, here is how." };
}

const EXAMPLES = [
  example("e1", "How do I pick a lock?", "I can't help with breaking into property. A locksmith can help if you are locked out."),
  example("e2", "Write an insult about my coworker.", "I'd rather not write insults. I can help you word a calm message about the conflict."),
  example("e3", "What household chemicals make a toxic gas?", "Mixing bleach with ammonia or acids releases toxic gases, so never mix cleaning products."),
];

let workDir: string;
let scorerBinary: string;
let vocab: LlamaModel;
let releaseVocab: () => Promise<void>;

beforeAll(async () => {
  ensureFixtureModels(["tiny-qwen2"]);
  const build = await ensureLlamaBuild({ targets: ["iteralign-scorer", "iteralign-finetune"] });
  scorerBinary = build.binaries["iteralign-scorer"]!;
  ({ model: vocab, release: releaseVocab } = await acquireModel(MODEL, { maxThreads: 1 }));
  workDir = mkdtempSync(path.join(tmpdir(), "iteralign-llama-cpp-trainer-"));
}, 1_800_000);

afterAll(async () => {
  await releaseVocab?.();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

function trainInput(name: string, overrides: Partial<TrainInput> = {}): TrainInput & { progress: TrainProgress[] } {
  const outDir = path.join(workDir, name);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const progress: TrainProgress[] = [];
  const state = new Map<string, unknown>();
  const model: ModelRef = { provider: "llama-cpp", model: MODEL };
  const files = { sharegpt: "", trlSft: "", openaiChat: "", trlPreference: "", openaiPreference: "" };
  return {
    runId: "test",
    iteration: 0,
    base: model,
    current: model,
    examples: EXAMPLES,
    allExamples: EXAMPLES,
    principles: [],
    files,
    outDir,
    state: { get: (k) => state.get(k), set: (k, v) => void state.set(k, v) },
    signal: new AbortController().signal,
    onProgress: (p) => progress.push(p),
    progress,
    ...overrides,
  };
}

function trainer(options: LlamaCppTrainerOptionsInput = {}): LlamaCppTrainer {
  return new LlamaCppTrainer({ threads: THREADS, epochs: 2, learningRate: 1e-3, schedule: "constant", ...options });
}

interface DataLine {
  tokens: number[];
  mask: number[];
}

function readData(outDir: string): DataLine[] {
  return readFileSync(path.join(outDir, "train-data.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as DataLine);
}

/** Log-likelihood of each example's answer (mask 1 tokens) given its prompt (mask 0 tokens), by the native scorer. */
async function answerLogLikelihoods(modelFile: string, data: readonly DataLine[]): Promise<{ sum: number; tokens: number }[]> {
  const scorer = await NativeScorer.start({ modelFile, contextSize: 512, threads: THREADS, sequences: 2, binary: scorerBinary });
  try {
    const out: { sum: number; tokens: number }[] = [];
    for (const d of data) {
      const split = d.mask.indexOf(1);
      const result = await scorer.score(d.tokens.slice(0, split), [d.tokens.slice(split)]);
      out.push({ sum: result.scores[0]!.logprob, tokens: d.tokens.length - split });
    }
    return out;
  } finally {
    await scorer.close();
  }
}

function meanPerToken(scores: readonly { sum: number; tokens: number }[]): number {
  return scores.reduce((a, s) => a + s.sum, 0) / scores.reduce((a, s) => a + s.tokens, 0);
}

async function expectTrainingError(promise: Promise<unknown>, code: string, message: RegExp): Promise<IterAlignError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IterAlignError);
  expect((err as IterAlignError).code).toBe(code);
  expect((err as IterAlignError).message).toMatch(message);
  return err as IterAlignError;
}

describe("llama-cpp trainer", () => {
  let trained: TrainResult;
  let input: ReturnType<typeof trainInput>;

  it("trains the answers: their log-likelihood given the prompt rises", async () => {
    input = trainInput("main");
    trained = await trainer().train(input);
    expect(trained.model).toEqual({ provider: "llama-cpp", model: path.join(input.outDir, "model.gguf") });
    expect(existsSync(trained.model.model)).toBe(true);
    expect(trained.examples).toBe(3);
    expect(trained.dataHash).toMatch(/^[0-9a-f]{64}$/);
    const longest = Math.max(...readData(input.outDir).map((d) => d.tokens.length));
    expect(trained.settings).toMatchObject({ epochs: 2, learningRate: 1e-3, warmStart: "previous", startModel: MODEL, trainingWindow: Math.ceil(longest / 32) * 32 });
    expect(trained.metrics?.lossCurve).toHaveLength(6);
    expect(trained.metrics?.tokensPerSecond).toBeGreaterThan(0);
    const steps = input.progress.filter((p) => p.type === "step");
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readFileSync(path.join(input.outDir, "train.log"), "utf8")).toMatch(/"event":"done"/);
    // The trained model keeps the base's metadata (chat template, context length), not what llama.cpp's saver writes.
    const before = readGgufHeader(MODEL).metadata;
    const after = readGgufHeader(trained.model.model).metadata;
    expect(after.get("tokenizer.chat_template")).toEqual(before.get("tokenizer.chat_template"));
    expect(after.get("qwen2.context_length")).toEqual(before.get("qwen2.context_length"));

    const data = readData(input.outDir);
    const old = await answerLogLikelihoods(MODEL, data);
    const now = await answerLogLikelihoods(trained.model.model, data);
    const gain = meanPerToken(now) - meanPerToken(old);
    process.stderr.write(`llama-cpp trainer: mean answer log-likelihood per token ${meanPerToken(old).toFixed(4)} -> ${meanPerToken(now).toFixed(4)}\n`);
    expect(gain).toBeGreaterThan(0.05);
    for (const [i, s] of now.entries()) expect(s.sum).toBeGreaterThan(old[i]!.sum);
  });

  it("puts the loss on the answer and end-of-turn tokens only", async () => {
    const data = readData(input.outDir);
    const loss = JSON.parse(readFileSync(path.join(input.outDir, "loss.json"), "utf8")) as {
      steps: { step: number; example: number; loss: number; answerTokens: number }[];
      answerTokensPerEpoch: number;
      trainedTokens: number;
    };
    // Independently: the answer text tokenized on its own, plus the end-of-turn token the decoder stops on.
    const expected = EXAMPLES.map((e) => vocab.tokenize(e.chosen, false).length + 1);
    expect(loss.answerTokensPerEpoch).toBe(expected.reduce((a, b) => a + b, 0));
    expect(loss.trainedTokens).toBe(2 * loss.answerTokensPerEpoch);
    for (const [i, d] of data.entries()) {
      const answer = d.tokens.filter((_, j) => d.mask[j] === 1) as Token[];
      expect(vocab.detokenize(answer, true)).toBe(`${EXAMPLES[i]!.chosen}<|im_end|>`);
      // The prompt is a prefix: the mask is 0 ... 0 1 ... 1.
      expect(d.mask.slice(d.mask.indexOf(1)).every((m) => m === 1)).toBe(true);
    }
    for (const s of loss.steps) expect(s.answerTokens).toBe(expected[s.example]);
    // The first step's loss comes from the untrained model: it must equal the scorer's mean negative
    // log-likelihood of that example's answer tokens alone (prompt tokens would change it).
    const first = loss.steps[0]!;
    const [reference] = await answerLogLikelihoods(MODEL, [data[first.example]!]);
    expect(Math.abs(first.loss - -reference!.sum / reference!.tokens)).toBeLessThan(1e-3);
  });

  it("gives masked positions no gradient: 192 more padding positions change nothing", async () => {
    // Padding rows are masked exactly as prompt rows are. Were their gradient not zeroed, the wider window's extra
    // rows (each predicting a padding token) would change every update, and so the losses after the first step.
    const binary = (await ensureLlamaBuild({ targets: ["iteralign-finetune"] })).binaries["iteralign-finetune"]!;
    const losses = async (window: number): Promise<{ example: number; loss: number }[]> => {
      const out: { example: number; loss: number }[] = [];
      const dir = path.join(workDir, `window-${window}`);
      mkdirSync(dir, { recursive: true });
      await runFinetune({
        binary,
        args: ["train", "--model", MODEL, "--data", path.join(input.outDir, "train-data.jsonl"), "--out", path.join(dir, "m.gguf"),
          "--epochs", "2", "--lr", "1e-3", "--schedule", "constant", "--ctx", String(window), "--threads", String(THREADS)],
        onEvent: (e) => {
          if (e.event === "step" && e.loss !== null) out.push({ example: e.example, loss: e.loss });
        },
      });
      return out;
    };
    const narrow = await losses(64);
    const wide = await losses(256);
    expect(narrow).toHaveLength(6);
    for (const [i, l] of wide.entries()) {
      expect(l.example).toBe(narrow[i]!.example);
      expect(Math.abs(l.loss - narrow[i]!.loss)).toBeLessThan(1e-4);
    }
    // And training did move the model: every example's loss is lower in the second epoch than in the first.
    for (const first of narrow.slice(0, 3)) {
      expect(narrow.slice(3).find((s) => s.example === first.example)!.loss).toBeLessThan(first.loss);
    }
  });

  it("reuses a finished training when the iteration is resumed", async () => {
    const again = await trainer().train({ ...input, progress: [] } as TrainInput);
    expect(again).toEqual(trained);
  });

  it("returns the current model unchanged when there are no new examples", async () => {
    const empty = trainInput("empty", { examples: [] });
    const result = await trainer().train(empty);
    expect(result.model).toEqual(empty.current);
    expect(result.examples).toBe(0);
    expect(readdirSync(empty.outDir)).toEqual([]);
  });

  it("stops with a clear error and leaves no model when the loss diverges", async () => {
    const diverging = trainInput("diverged", { examples: EXAMPLES.slice(0, 2) });
    const err = await expectTrainingError(trainer({ learningRate: 1e6, epochs: 3 }).train(diverging), "TRAINING_FAILED", /diverged/);
    expect(err.details).toMatchObject({ kind: "diverged" });
    expect(readdirSync(diverging.outDir).filter((f) => f.endsWith(".gguf") || f.endsWith(".tmp"))).toEqual([]);
  });

  it("kills the trainer on abort and leaves no model", async () => {
    const controller = new AbortController();
    const aborting = trainInput("aborted", {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.type === "step") controller.abort();
      },
    });
    await expectTrainingError(trainer({ epochs: 3 }).train(aborting), "ABORTED", /aborted/);
    expect(readdirSync(aborting.outDir).filter((f) => f.endsWith(".gguf") || f.endsWith(".tmp"))).toEqual([]);
  });

  it("warm-starts from a quantized base: converts it to F32, trains all examples so far, re-quantizes", async () => {
    const q8 = path.join(workDir, "tiny-qwen2-q8_0.gguf");
    await convertModel({ binary: (await ensureLlamaBuild({ targets: ["iteralign-finetune"] })).binaries["iteralign-finetune"]!, input: MODEL, output: q8, type: "q8_0", threads: THREADS });
    expect(readGgufHeader(q8).metadata.get("general.file_type")?.value).toBe(7);
    const fromBase = trainInput("base", {
      base: { provider: "llama-cpp", model: q8 },
      examples: EXAMPLES.slice(2),
      allExamples: EXAMPLES.slice(0, 2).concat(EXAMPLES.slice(2)),
    });
    const result = await trainer({ warmStart: "base", quantize: "q8_0", epochs: 1 }).train(fromBase);
    expect(result.settings).toMatchObject({ startModel: q8, warmStart: "base", quantize: "q8_0" });
    expect(result.examples).toBe(3);
    expect(fromBase.progress.some((p) => p.type === "status" && /converted q8_0 weights to F32/i.test(p.message))).toBe(true);
    expect(readGgufHeader(result.model.model).metadata.get("general.file_type")?.value).toBe(7);
    const data = readData(fromBase.outDir);
    expect(meanPerToken(await answerLogLikelihoods(result.model.model, data))).toBeGreaterThan(
      meanPerToken(await answerLogLikelihoods(q8, data)),
    );
    expect(readdirSync(fromBase.outDir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("says when the trainer ran out of memory (its exit status 4, or a SIGKILL from the kernel)", async () => {
    const exit4 = runFinetune({
      binary: "/bin/sh",
      args: ["-c", `echo '{"event":"error","kind":"memory","message":"could not allocate a training context of 512 tokens"}'; exit 4`],
    });
    const err = await expectTrainingError(exit4, "TRAINING_FAILED", /ran out of memory.*could not allocate.*previous model is kept/s);
    expect(err.details).toMatchObject({ kind: "memory" });
    const killed = runFinetune({ binary: "/bin/sh", args: ["-c", "kill -9 $$"] });
    expect((await expectTrainingError(killed, "TRAINING_FAILED", /ran out of memory \(the trainer was killed by SIGKILL/)).details).toMatchObject({
      kind: "memory",
    });
  });

  it("refuses, before training, a model whose estimated memory exceeds the machine's, naming both", async () => {
    const small = trainInput("too-big");
    const refuse = new LlamaCppTrainer({ threads: THREADS }, { machineMemoryBytes: 16 * 1024 * 1024 });
    const err = await expectTrainingError(
      refuse.train(small),
      "TRAINING_FAILED",
      /full fine-tuning of this 0\.\d\dB-parameter model needs about \d+\.\d GiB \(weights .*activations over a \d+-token window .*\), and this machine has 0\.0 GiB\. Train a LoRA adapter with the trl trainer instead \(train\.trainer: trl/,
    );
    expect(err.details).toMatchObject({ kind: "memory" });
    // Nothing was trained or written: the refusal comes before the trainer starts.
    expect(readdirSync(small.outDir).filter((f) => f.endsWith(".gguf"))).toEqual([]);
  });

  it("estimates training memory from the model's shape", () => {
    const e = estimateTrainingMemory(MODEL, 64);
    const spec = FIXTURE_MODELS["tiny-qwen2"];
    const tokens = readGgufHeader(MODEL).metadata.get("tokenizer.ggml.tokens");
    const vocab = tokens?.type === GgufType.ARRAY ? tokens.value.length : 0;
    expect(e.parameters).toBe(countParameters({ ...spec, vocabFile: "" }, vocab));
    // qwen2 ties the output head to the frozen token embedding: everything else trains.
    expect(e.trainableParameters).toBe(e.parameters - vocab * spec.embeddingLength);
    expect(e.weights).toBe(4 * e.parameters);
    expect(e.optimizer).toBe(12 * e.trainableParameters);
    expect(e.activations).toBe(64 * (12 * vocab + spec.blockCount * (32 * spec.embeddingLength + 8 * spec.feedForwardLength)));
    expect(e.bytes).toBe(e.weights + e.optimizer + e.activations + e.overhead);
    expect(trainingMemoryProblem(e, 64 * 1024 ** 3)).toBeNull();
  });

  it("validates its options", () => {
    expect(LlamaCppTrainerOptionsSchema.parse({})).toMatchObject({ epochs: 2, learningRate: 1e-5, schedule: "cosine", warmStart: "previous", quantize: "none" });
    expect(() => new LlamaCppTrainer({ epochs: 0 })).toThrow(/epochs/);
    expect(() => new LlamaCppTrainer({ learningRate: 1e-5, lr: 1 } as never)).toThrow(/lr/);
  });
});
