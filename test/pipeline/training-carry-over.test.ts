import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { StageCheckpoint } from "../../src/pipeline/checkpoint.js";
import { RunLayout } from "../../src/pipeline/run-layout.js";
import { trainIteration } from "../../src/pipeline/training.js";
import { systemClock } from "../../src/pipeline/run-context.js";
import type { TrainingExample } from "../../src/spec/records.js";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { OpenAITrainer } from "../../src/train/openai-trainer.js";
import type { ModelRef } from "../../src/spec/trainer.js";
import { startFakeFineTuneServer, type FakeFineTuneServer } from "../helpers/fake-finetune-server.js";

const HOSTED: ModelRef = { provider: "openai-compatible", model: "gpt-4o-mini-2024-07-18" };

function example(iteration: number, i: number): TrainingExample {
  return {
    id: `it${iteration}:example:p${i}`,
    iteration,
    attemptId: `it${iteration}:attempt:p${i}`,
    revisionId: `it${iteration}:revision:p${i}`,
    messages: [{ role: "user", content: `Harmful request ${iteration}.${i}` }],
    chosen: `I can't help with request ${iteration}.${i}.`,
    rejected: `Sure, here is how (${iteration}.${i}).`,
  };
}

let server: FakeFineTuneServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("training with fewer examples than the trainer needs", () => {
  it("carries an iteration's examples over until the openai trainer's 10 are there, then trains on all of them", async () => {
    server = await startFakeFineTuneServer({ steps: 2 });
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-carry-"));
    dirs.push(dir);
    const store = new MemoryRunStore();
    store.createRun({ id: "r", configJson: "{}", configHash: "h", createdAt: "t" });
    const checkpoint = new StageCheckpoint(store, "r", systemClock);
    const layout = new RunLayout(dir);
    const trainer = new OpenAITrainer({ baseUrl: server.baseUrl, pollIntervalMs: 2, maxPollIntervalMs: 10, retryDelayMs: 1 });
    expect(trainer.minExamples).toBe(10);
    const first = Array.from({ length: 4 }, (_, i) => example(0, i));
    const common = { trainer, checkpoint, layout, runId: "r", base: HOSTED, current: HOSTED, principles: [], signal: new AbortController().signal, onProgress: () => undefined };

    const deferred = await trainIteration({ ...common, iteration: 0, examples: first, allExamples: first });
    expect(deferred.deferred).toBe(4);
    expect(deferred.examples).toBe(0);
    expect(deferred.model).toEqual(HOSTED);
    expect(server.count("POST /files")).toBe(0);
    expect(server.count("POST /fine_tuning/jobs")).toBe(0);

    const second = Array.from({ length: 7 }, (_, i) => example(1, i));
    const pending = [...first, ...second];
    const trained = await trainIteration({ ...common, iteration: 1, examples: pending, allExamples: pending });
    expect(trained.deferred).toBeUndefined();
    expect(trained.examples).toBe(11);
    expect(trained.model.model).not.toBe(HOSTED.model);
    // The uploaded file holds both iterations' examples, written under the training's own data folder.
    const [uploaded] = [...server.files.values()];
    expect(uploaded?.content.trim().split("\n")).toHaveLength(11);
    const combined = readFileSync(path.join(layout.iterationDir(1), "train", "data", "sft.openai.jsonl"), "utf8");
    expect(combined).toBe(uploaded?.content);
    store.close();
  });
});
