import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { runCli } from "../helpers/cli.js";
import { startFakeServer, type FakeServer } from "../helpers/fake-openai-server.js";
import { runCliProcess } from "../helpers/run-process.js";
import { trlPython } from "../helpers/trl-env.js";

/**
 * The trl trainer inside the loop, for real: TRL + PEFT in the Python environment `npm run setup:trl` makes, LoRA
 * SFT on the CPU, the adapter converted with llama.cpp's convert_lora_to_gguf.py and loaded by node-llama-cpp on
 * top of the base GGUF. Target and oracle are the generated tiny-llama (random weights, real tokenizer and chat
 * template); its Hugging Face copy is made from the GGUF by the trainer itself. The judge is a scripted HTTP
 * endpoint that fails every red-team answer and passes every revision, so each iteration has examples to train on.
 */
let judge: FakeServer;

beforeAll(async () => {
  trlPython();
  judge = await startFakeServer((req, res) => {
    const body = req.body as { response_format?: { json_schema?: { name?: string } } };
    const name = body.response_format?.json_schema?.name;
    const verdict =
      name === "gate_verdict"
        ? { pass: true, violated: [], severity: "none", rationale: "The revision declines safely.", refusal: false, promptBenign: false }
        : { pass: false, violated: ["harmless"], severity: "high", rationale: "The answer helps with harm.", promptBenign: false };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id: "x",
        object: "chat.completion",
        choices: [{ index: 0, message: { role: "assistant", content: JSON.stringify(verdict) }, finish_reason: "stop" }],
        usage: { prompt_tokens: 10, completion_tokens: 10 },
      }),
    );
  });
});

afterAll(async () => {
  await judge.close();
});

function writeConfig(dir: string): string {
  const config = path.join(dir, "iteralign.yaml");
  writeFileSync(
    config,
    `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 1024
    sequences: 2
    maxTokens: 24
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 4096
    sequences: 2
  judge:
    provider: openai-compatible
    baseUrl: ${judge.baseUrl}
    model: scripted-judge
roles:
  target: target
  oracle: oracle
  judge: judge
data:
  redTeam:
    - bundled: dangerousqa
  limit: 4
loop:
  batchSize: 2
  redTeam: { temperature: 0, maxTokens: 16 }
train:
  trainer: trl
  trl:
    epochs: 4
    learningRate: 0.005
    batchSize: 1
    checkpointSteps: 1
    lora: { rank: 8, alpha: 16, dropout: 0.05 }
    seed: 3
    threads: 1
engine:
  maxThreads: 1
`,
  );
  return config;
}

interface TrainResultFile {
  trainer: string;
  examples: number;
  model: { provider: string; model: string; adapters?: string[] };
  startedFrom: { model: string; adapters?: string[] };
  settings: Record<string, unknown>;
  metrics: { lossCurve: Array<{ step: number; loss: number }>; finalLoss: number };
}

function trainResult(runDir: string, iteration: number): TrainResultFile {
  return JSON.parse(readFileSync(path.join(runDir, "iterations", String(iteration).padStart(3, "0"), "train", "result.json"), "utf8")) as TrainResultFile;
}

/** Mean per-token log-likelihood of each example's answer after its prompt (rendered with the chat template). */
async function meanAnswerLogLikelihood(model: LlamaCppModel, examples: ReadonlyArray<{ messages: Array<{ role: "user" | "assistant" | "system"; content: string }> }>): Promise<number> {
  let total = 0;
  let tokens = 0;
  for (const e of examples) {
    const answer = e.messages.at(-1)?.content ?? "";
    const result = await model.scoreContinuations({ context: "", chat: { messages: e.messages.slice(0, -1) }, continuations: [answer] });
    const score = result.scores[0];
    if (!score) throw new Error("no score");
    total += score.logprob;
    tokens += score.tokenCount;
  }
  return total / tokens;
}

describe("iteralign run with the trl trainer (LoRA on the CPU, real TRL)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-trl-loop-"));
  const runDir = path.join(dir, "runs", "lora");

  it("trains an adapter each iteration, red-teams base + adapter next, and the trained answers become likelier", async () => {
    const config = writeConfig(dir);
    const result = await runCli(["run", "--config", config, "--run-id", "lora"]);
    expect(result.code, result.err).toBe(0);
    const base = fixtureModelPath("tiny-llama");
    const adapter0 = path.join(runDir, "iterations", "000", "train", "adapter.gguf");
    const adapter1 = path.join(runDir, "iterations", "001", "train", "adapter.gguf");
    expect(existsSync(adapter0)).toBe(true);
    expect(existsSync(adapter1)).toBe(true);
    const summary = JSON.parse(readFileSync(path.join(runDir, "summary.json"), "utf8")) as {
      trainer: string;
      targets: Array<{ iteration: number; model: string; adapters?: string[] }>;
      finalTarget: string;
      finalAdapters?: string[];
      iterations: Array<{ trainingExamples: number }>;
    };
    expect(summary.trainer).toBe("trl");
    expect(summary.iterations.map((m) => m.trainingExamples)).toEqual([2, 2]);
    expect(summary.targets).toEqual([
      { iteration: 0, model: base },
      { iteration: 1, model: base, adapters: [adapter0] },
    ]);
    expect(summary.finalTarget).toBe(base);
    expect(summary.finalAdapters).toEqual([adapter1]);

    // The second iteration red-teamed base + adapter: its records name both.
    const attempt = JSON.parse(readFileSync(path.join(runDir, "iterations", "001", "attempts.jsonl"), "utf8").split("\n")[0] ?? "") as { record: { model: string } };
    expect(attempt.record.model).toBe(`${base} + lora:${adapter0}`);

    const t0 = trainResult(runDir, 0);
    const t1 = trainResult(runDir, 1);
    expect(t0).toMatchObject({ trainer: "trl", examples: 2, model: { provider: "llama-cpp", model: base, adapters: [adapter0] } });
    expect(t0.settings).toMatchObject({ method: "sft", mode: "lora", device: "cpu", precisionUsed: "fp32", handoff: { kind: "lora adapter", adapter: adapter0 } });
    // 2 examples x 4 epochs at batch 1: 8 optimizer steps, each logged.
    expect(t0.metrics.lossCurve.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The second iteration continued from the first one's adapter (warmStart: previous).
    expect(t1.startedFrom).toEqual({ provider: "llama-cpp", model: base, adapters: [adapter0] });
    expect(t1.settings["startedFrom"]).toBe(path.join(runDir, "iterations", "000", "train", "trl", "adapter"));

    // The adapter changes the model: iteration 0's trained answers are likelier under base + adapter.
    const examples = readFileSync(path.join(runDir, "iterations", "000", "train", "trl", "data-sft.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { messages: Array<{ role: "user" | "assistant" | "system"; content: string }> });
    expect(examples).toHaveLength(2);
    const plain = await LlamaCppModel.load({ model: base, contextSize: 2048, sequences: 2, threads: 1, scoring: "engine" });
    const tuned = await LlamaCppModel.load({ model: base, adapters: [adapter0], contextSize: 2048, sequences: 2, threads: 1, scoring: "engine" });
    try {
      expect(tuned.fingerprint).not.toBe(plain.fingerprint);
      const before = await meanAnswerLogLikelihood(plain, examples);
      const after = await meanAnswerLogLikelihood(tuned, examples);
      expect(after).toBeGreaterThan(before + 0.05);
      // The native scorer applies the adapter too: both scoring paths agree.
      const native = await LlamaCppModel.load({ model: base, adapters: [adapter0], contextSize: 2048, sequences: 2, threads: 1, scoring: "native" });
      try {
        expect(native.scoringPath).toBe("native");
        expect(await meanAnswerLogLikelihood(native, examples)).toBeCloseTo(after, 3);
      } finally {
        await native.close();
      }
    } finally {
      await plain.close();
      await tuned.close();
    }
  }, 900_000);

  it("killed with SIGKILL during training, resumes from the last TRL checkpoint to the same adapter", async () => {
    const first = trainResult(runDir, 0);
    const firstHash = first.settings["outputHash"];
    expect(firstHash).toMatch(/^[0-9a-f]{64}$/);
    const config = path.join(dir, "iteralign.yaml");
    // Stopped by the fault hook at the third TRL checkpoint of iteration 0's training (the process kills itself
    // with SIGKILL; its training subprocess notices its parent is gone and exits).
    const killed = await runCliProcess(["run", "--config", config, "--run-id", "killed"], { ITERALIGN_FAULT_AT: "trl-checkpoint:0:3" });
    expect(killed.signal).toBe("SIGKILL");
    const killedDir = path.join(dir, "runs", "killed", "iterations", "000", "train", "trl", "sft", "checkpoints");
    expect(existsSync(path.join(killedDir, "checkpoint-3"))).toBe(true);
    const resumed = await runCli(["run", "--config", config, "--resume", "killed"]);
    expect(resumed.code, resumed.err).toBe(0);
    const again = trainResult(path.join(dir, "runs", "killed"), 0);
    expect(again.settings["outputHash"]).toBe(firstHash);
    expect(readFileSync(path.join(dir, "runs", "killed", "iterations", "000", "train", "trl", "train.log"), "utf8")).toContain('"event": "resume"');
    expect(trainResult(path.join(dir, "runs", "killed"), 1).settings["outputHash"]).toBe(trainResult(runDir, 1).settings["outputHash"]);
  }, 900_000);
});
