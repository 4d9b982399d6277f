import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { runCli } from "../helpers/cli.js";
import { startFakeServer, type FakeServer } from "../helpers/fake-openai-server.js";

/**
 * The llama-cpp trainer inside the loop. Target and oracle are real engine models; the judge is a scripted HTTP
 * endpoint that fails every red-team answer and passes every revision, because a random-weight judge never
 * passes a revision and so would leave nothing to train on. What is under test is the hand-off: training on the
 * gated examples, the next iteration red-teaming the trained GGUF, and evaluation before and after.
 */
let judge: FakeServer;

beforeAll(async () => {
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

describe("iteralign run with the llama-cpp trainer", () => {
  it("trains on each iteration's gated examples, red-teams the trained model next, and evaluates before and after", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-train-loop-"));
    const config = path.join(dir, "iteralign.yaml");
    writeFileSync(
      config,
      `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 1024
    sequences: 4
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 8192
    sequences: 4
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
  redTeam: { temperature: 0, maxTokens: 16, frequencyPenalty: 0.5 }
train:
  trainer: llama-cpp
  llamaCpp: { epochs: 1, learningRate: 0.001, threads: 1 }
eval:
  benchmarks: truthfulqa
  limit: 2
engine:
  maxThreads: 1
`,
    );
    const result = await runCli(["run", "--config", config, "--run-id", "trained"]);
    expect(result.code, result.err).toBe(0);
    const runDir = path.join(dir, "runs", "trained");
    const summary = JSON.parse(readFileSync(path.join(runDir, "summary.json"), "utf8")) as {
      iterations: Array<{ trainingExamples: number }>;
      trainer: string;
      targets: Array<{ iteration: number; model: string }>;
      finalTarget: string;
    };
    expect(summary.trainer).toBe("llama-cpp");
    expect(summary.iterations.map((m) => m.trainingExamples)).toEqual([2, 2]);
    const trained0 = path.join(runDir, "iterations", "000", "train", "model.gguf");
    const trained1 = path.join(runDir, "iterations", "001", "train", "model.gguf");
    expect(existsSync(trained0)).toBe(true);
    expect(summary.targets).toEqual([
      { iteration: 0, model: fixtureModelPath("tiny-qwen2") },
      { iteration: 1, model: trained0 },
    ]);
    expect(summary.finalTarget).toBe(trained1);
    // The second iteration's answers come from the trained model.
    const attempt = JSON.parse(readFileSync(path.join(runDir, "iterations", "001", "attempts.jsonl"), "utf8").split("\n")[0] ?? "") as {
      record: { model: string };
    };
    expect(attempt.record.model).toBe(trained0);
    const train = JSON.parse(readFileSync(path.join(runDir, "iterations", "001", "train", "result.json"), "utf8")) as {
      trainer: string;
      dataHash: string;
      examples: number;
      startedFrom: { model: string };
      settings: Record<string, unknown>;
    };
    expect(train).toMatchObject({ trainer: "llama-cpp", examples: 2, startedFrom: { model: trained0 } });
    expect(train.dataHash).toMatch(/^[0-9a-f]{64}$/);
    expect(train.settings).toMatchObject({ epochs: 1, learningRate: 0.001 });
    // Evaluated before the first iteration and after each trained one; compare prints them.
    const evals = JSON.parse(readFileSync(path.join(runDir, "eval", "summary.json"), "utf8")) as { entries: Array<{ label: string; model: string; trainer?: string }> };
    expect(evals.entries.map((e) => [e.label, e.model, e.trainer])).toEqual([
      // The base model was trained by no one: its row names no trainer.
      ["base", fixtureModelPath("tiny-qwen2"), undefined],
      ["iter-000", trained0, "llama-cpp"],
      ["iter-001", trained1, "llama-cpp"],
    ]);
    const compare = await runCli(["compare", runDir]);
    expect(compare.code, compare.err).toBe(0);
    expect(compare.out).toContain("iter-001");
    expect(compare.out).toContain("mc1");
    expect(compare.out.split("\n").find((l) => l.startsWith("base"))).not.toContain("llama-cpp");

    // A resumed finished run trains nothing again and writes the same summary.
    const before = readFileSync(path.join(runDir, "summary.json"), "utf8");
    const again = await runCli(["run", "--config", config, "--resume", "trained"]);
    expect(again.code, again.err).toBe(0);
    expect(readFileSync(path.join(runDir, "summary.json"), "utf8")).toBe(before);
  }, 400_000);
});
