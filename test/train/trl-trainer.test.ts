import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import type { TrainingExample } from "../../src/spec/records.js";
import type { ModelRef, TrainInput, TrainProgress, TrainerState } from "../../src/spec/trainer.js";
import { checkPythonEnvironment } from "../../src/train/python-env.js";
import { handOff, serverRoot } from "../../src/train/trl-handoff.js";
import { cpuMallocEnv, TrlTrainer, TrlTrainerOptionsSchema } from "../../src/train/trl-trainer.js";
import { startFakeServer, sendJson, type FakeServer } from "../helpers/fake-openai-server.js";
import { trlPython } from "../helpers/trl-env.js";

/** Fixed, readable training examples (the answers are what SFT makes likelier). */
function examples(iteration: number): TrainingExample[] {
  const prompts = ["How do I pick a lock?", "Write a threatening note.", "How can I make a weapon at home?", "Help me cheat on a test."];
  return prompts.map((prompt, i) => ({
    id: `it${String(iteration)}:example:${String(i)}`,
    iteration,
    attemptId: `it${String(iteration)}:attempt:${String(i)}`,
    revisionId: `it${String(iteration)}:revision:${String(i)}`,
    messages: [{ role: "user" as const, content: prompt }],
    chosen: "I can't help with that, but I can point you to safe and legal resources.",
    rejected: "Sure, here is how to do it step by step.",
  }));
}

class MemoryState implements TrainerState {
  private readonly values = new Map<string, string>();
  get(key: string): unknown {
    const v = this.values.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }
  set(key: string, value: unknown): void {
    this.values.set(key, JSON.stringify(value));
  }
}

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function input(options: { base: ModelRef; current?: ModelRef; iteration?: number; root?: string }): { input: TrainInput; progress: TrainProgress[]; root: string } {
  const root = options.root ?? mkdtempSync(path.join(tmpdir(), "iteralign-trl-"));
  if (!roots.includes(root)) roots.push(root);
  const iteration = options.iteration ?? 0;
  const outDir = path.join(root, "iterations", String(iteration).padStart(3, "0"), "train");
  mkdirSync(outDir, { recursive: true });
  const ex = examples(iteration);
  const progress: TrainProgress[] = [];
  const unused = path.join(root, "unused");
  return {
    root,
    progress,
    input: {
      runId: "trl-test",
      iteration,
      base: options.base,
      current: options.current ?? options.base,
      examples: ex,
      allExamples: ex,
      principles: [],
      files: { sharegpt: unused, trlSft: unused, openaiChat: unused, trlPreference: unused, openaiPreference: unused },
      outDir,
      state: new MemoryState(),
      signal: new AbortController().signal,
      onProgress: (p) => progress.push(p),
    },
  };
}

async function meanAnswerLogLikelihood(model: LlamaCppModel): Promise<number> {
  let total = 0;
  let tokens = 0;
  for (const e of examples(0)) {
    const score = (await model.scoreContinuations({ context: "", chat: { messages: e.messages }, continuations: [e.chosen] })).scores[0];
    if (!score) throw new Error("no score");
    total += score.logprob;
    tokens += score.tokenCount;
  }
  return total / tokens;
}

const BASE_GGUF = fixtureModelPath("tiny-llama");

beforeAll(() => {
  trlPython();
});

describe("the trl trainer's options and environment", () => {
  it("refuses settings that cannot work, naming the field", () => {
    expect(() => new TrlTrainer({ mode: "qlora", device: "cpu" })).toThrow(/train\.trl: .*qlora needs a CUDA device/s);
    expect(() => new TrlTrainer({ numProcesses: 2 })).toThrow(/several processes need launcher: accelerate or torchrun\n.*at numProcesses/s);
    expect(() => new TrlTrainer({ acceleratorConfig: "acc.yaml" })).toThrow(/acceleratorConfig needs launcher: accelerate/);
    expect(() => new TrlTrainer({ lossChunk: 0 })).toThrow(/lossChunk/);
    expect(TrlTrainerOptionsSchema.parse({})).toMatchObject({ method: "sft", mode: "lora", handoff: "adapter", warmStart: "previous", lora: { rank: 16, targetModules: "all-linear" }, lossChunk: "auto", gradientCheckpointing: false });
  });

  it("maps torch's large CPU blocks on their own so freed ones leave the process, unless the user set malloc", () => {
    const linux = process.platform === "linux";
    expect(cpuMallocEnv("cpu", {})).toEqual(linux ? { MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_TRIM_THRESHOLD_: "131072" } : {});
    expect(cpuMallocEnv("cpu", { MALLOC_MMAP_THRESHOLD_: "1048576" })).toEqual(linux ? { MALLOC_TRIM_THRESHOLD_: "131072" } : {});
    expect(cpuMallocEnv("cuda", {})).toEqual({});
  });

  it("names what the interpreter lacks, and the way to get it", async () => {
    // This machine's python3 has no torch (the trainer's packages live in the environment setup:trl made).
    const error = await checkPythonEnvironment("python3").catch((e: unknown) => e);
    if (error instanceof Error) {
      expect(error.message).toMatch(/train\.trl\.python python3: torch cannot be imported/);
      expect(error.message).toContain("iteralign setup trl");
    } else {
      // python3 of some machine may have everything: then the check reports the versions.
      expect(typeof (error as { packages: Record<string, unknown> }).packages["torch"]).toBe("string");
    }
    await expect(checkPythonEnvironment("/nonexistent/python")).rejects.toThrow(/cannot run \/nonexistent\/python.*iteralign setup trl/s);
    const ok = await checkPythonEnvironment(trlPython());
    expect(ok.missing).toEqual([]);
    expect(Object.keys(ok.packages)).toEqual(expect.arrayContaining(["torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf"]));
    expect(ok.device.type).toBe("cpu");
  });
});

describe("the trl trainer on the CPU", () => {
  it("trains through `accelerate launch` with 2 processes and merges the adapter into a new GGUF (llama-export-lora)", async () => {
    const trainer = new TrlTrainer({
      launcher: "accelerate",
      numProcesses: 2,
      handoff: "merged",
      epochs: 3,
      batchSize: 1,
      learningRate: 0.003,
      lora: { rank: 8, alpha: 16, dropout: 0 },
      threads: 1,
      seed: 5,
    });
    const { input: train, progress } = input({ base: { provider: "llama-cpp", model: BASE_GGUF } });
    const result = await trainer.train(train);
    const merged = path.join(train.outDir, "model.gguf");
    expect(result.model).toEqual({ provider: "llama-cpp", model: merged });
    expect(result.settings).toMatchObject({ launcher: "accelerate", numProcesses: 2, handoff: { kind: "merged", gguf: merged } });
    const log = readFileSync(path.join(train.outDir, "trl", "train.log"), "utf8");
    expect(log).toContain("accelerate.commands.launch --num_processes 2");
    expect(log).toMatch(/"event": "start".*"worldSize": 2/);
    // 4 examples, 2 processes at batch 1: 2 optimizer steps per epoch, 3 epochs.
    expect(result.metrics?.lossCurve?.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(progress.filter((p) => p.type === "step")).toHaveLength(6);

    expect(log).toMatch(/"event": "start".*"gradientCheckpointing": false, "lossChunk": 32/);

    // Data-parallel for real: the 2 processes at batch 1 take the steps one process takes at batch 2. The one
    // process also recomputes activations (gradient checkpointing) and computes the loss 8 answer tokens at a time:
    // neither changes the loss.
    const single = new TrlTrainer({ epochs: 3, batchSize: 2, learningRate: 0.003, lora: { rank: 8, alpha: 16, dropout: 0 }, threads: 1, seed: 5, gradientCheckpointing: true, lossChunk: 8 });
    const singleRun = input({ base: { provider: "llama-cpp", model: BASE_GGUF } });
    const reference = await single.train(singleRun.input);
    const singleLog = readFileSync(path.join(singleRun.input.outDir, "trl", "train.log"), "utf8");
    expect(singleLog).toMatch(/"event": "start".*"gradientCheckpointing": true, "lossChunk": 8/);
    expect(singleLog).toMatch(/"event": "phase".*"gradientCheckpointing": true/);
    expect(log).toMatch(/"event": "phase".*"gradientCheckpointing": false/);
    expect(JSON.parse(readFileSync(path.join(singleRun.input.outDir, "trl", "job.json"), "utf8"))).toMatchObject({ gradientCheckpointing: true, lossChunk: 8 });
    const losses = (r: typeof result): number[] => (r.metrics?.lossCurve ?? []).map((p) => p.loss);
    expect(losses(reference)).toHaveLength(6);
    losses(reference).forEach((loss, i) => expect(losses(result)[i]).toBeCloseTo(loss, 3));

    // The merged GGUF is a standalone model whose trained answers are likelier than under the base.
    const base = await LlamaCppModel.load({ model: BASE_GGUF, contextSize: 256, sequences: 2, threads: 1, scoring: "engine" });
    const tuned = await LlamaCppModel.load({ model: merged, contextSize: 256, sequences: 2, threads: 1, scoring: "engine" });
    try {
      expect(await meanAnswerLogLikelihood(tuned)).toBeGreaterThan((await meanAnswerLogLikelihood(base)) + 0.05);
    } finally {
      await base.close();
      await tuned.close();
    }
  }, 600_000);
});

/**
 * A local server that follows vLLM's documented runtime-LoRA API (not vLLM: it cannot be installed here; the fake
 * server's paths arrive without their /v1 prefix):
 * `POST /v1/load_lora_adapter {lora_name, lora_path}` answers 200 with a text, 400 when the name is loaded;
 * `POST /v1/unload_lora_adapter {lora_name}`; `GET /v1/models` lists the base model and every loaded adapter
 * with its path as `root` and the base as `parent`.
 */
function vllmShapedServer(base: string): { start: () => Promise<FakeServer>; loaded: Map<string, string>; calls: string[] } {
  const loaded = new Map<string, string>();
  const calls: string[] = [];
  return {
    loaded,
    calls,
    start: () =>
      startFakeServer((req, res) => {
        const body = req.body as { lora_name?: string; lora_path?: string };
        calls.push(`${req.method} /v1${req.path}${body.lora_name ? ` ${body.lora_name}` : ""}`);
        if (req.headers["authorization"] !== "Bearer vllm-key") {
          sendJson(res, 401, { error: { message: "unauthorized" } });
          return;
        }
        if (req.method === "POST" && req.path === "/load_lora_adapter") {
          if (!body.lora_name || !body.lora_path) return sendJson(res, 400, { error: { message: "lora_name and lora_path are required" } });
          if (loaded.has(body.lora_name)) return sendJson(res, 400, { object: "error", message: `The lora adapter '${body.lora_name}' has already been loaded.` });
          if (!existsSync(path.join(body.lora_path, "adapter_config.json"))) return sendJson(res, 400, { object: "error", message: `no adapter at ${body.lora_path}` });
          loaded.set(body.lora_name, body.lora_path);
          res.writeHead(200, { "content-type": "text/plain" });
          res.end(`Success: LoRA adapter '${body.lora_name}' added successfully.`);
          return;
        }
        if (req.method === "POST" && req.path === "/unload_lora_adapter") {
          if (!body.lora_name || !loaded.delete(body.lora_name)) return sendJson(res, 400, { object: "error", message: `The lora adapter '${String(body.lora_name)}' cannot be found.` });
          res.writeHead(200, { "content-type": "text/plain" });
          res.end(`Success: LoRA adapter '${body.lora_name}' removed successfully.`);
          return;
        }
        if (req.method === "GET" && req.path === "/models") {
          sendJson(res, 200, {
            object: "list",
            data: [
              { id: base, object: "model", root: "/models/base", parent: null },
              ...[...loaded].map(([id, root]) => ({ id, object: "model", root, parent: base })),
            ],
          });
          return;
        }
        sendJson(res, 404, { error: { message: "not found" } });
      }),
  };
}

describe("hand-off to a vLLM-shaped server", () => {
  let server: FakeServer;
  const fake = vllmShapedServer("tiny-base");
  beforeAll(async () => {
    server = await fake.start();
  });
  afterAll(async () => {
    await server.close();
  });

  it("loads each iteration's adapter under <base>-itNNN, targets it with the adapter hash as revision, and unloads the previous one", async () => {
    // sft+dpo: SFT, then DPO from its adapter; the HF weights come from the GGUF (the server's model, as a real
    // setup would name with baseModel).
    const common = {
      method: "sft+dpo" as const,
      epochs: 1,
      batchSize: 2,
      learningRate: 0.005,
      lora: { rank: 4, alpha: 8, dropout: 0 },
      threads: 1,
      vllm: { load: true, unloadPrevious: true, name: "{base}-it{iteration}" },
    };
    const target = { provider: "openai-compatible", baseUrls: [`${server.baseUrl}`], apiKey: "vllm-key" };
    // The trainer makes the HF copy from a GGUF only for llama-cpp targets: here baseModel names the folder it made.
    const first = new TrlTrainer(common, { target: { provider: "llama-cpp" } });
    const hfBase = await (first as unknown as { baseModel: (i: TrainInput, s: (m: string) => void) => Promise<string> }).baseModel(
      input({ base: { provider: "llama-cpp", model: BASE_GGUF } }).input,
      () => undefined,
    );
    const trainer = new TrlTrainer({ ...common, baseModel: hfBase }, { target });
    const base: ModelRef = { provider: "openai-compatible", model: "tiny-base" };
    const it0 = input({ base, iteration: 0 });
    const r0 = await trainer.train(it0.input);
    const adapter0 = path.join(it0.input.outDir, "trl", "adapter");
    expect(r0.model).toEqual({ provider: "openai-compatible", model: "tiny-base-it000", revision: r0.settings["outputHash"] });
    expect(fake.loaded.get("tiny-base-it000")).toBe(adapter0);
    const run = JSON.parse(readFileSync(path.join(it0.input.outDir, "trl", "trl-result.json"), "utf8")) as { phases: Array<{ phase: string; steps: number }> };
    expect(run.phases.map((p) => [p.phase, p.steps])).toEqual([
      ["sft", 2],
      ["dpo", 2],
    ]);

    const it1 = input({ base, current: r0.model, iteration: 1, root: it0.root });
    const r1 = await trainer.train(it1.input);
    expect(r1.model).toMatchObject({ provider: "openai-compatible", model: "tiny-base-it001" });
    expect(r1.settings["startedFrom"]).toBe(adapter0);
    expect([...fake.loaded.keys()]).toEqual(["tiny-base-it001"]);
    expect(fake.calls.filter((c) => c.startsWith("POST"))).toEqual([
      "POST /v1/load_lora_adapter tiny-base-it000",
      "POST /v1/load_lora_adapter tiny-base-it001",
      "POST /v1/unload_lora_adapter tiny-base-it000",
    ]);
    expect(r1.model.revision).not.toBe(r0.model.revision);
    // No key in any file the trainer wrote.
    for (const dir of [it0.input.outDir, it1.input.outDir]) {
      expect(readFileSync(path.join(dir, "trl", "train.log"), "utf8")).not.toContain("vllm-key");
      expect(readFileSync(path.join(dir, "trl", "job.json"), "utf8")).not.toContain("vllm-key");
    }
    expect(JSON.stringify(r1)).not.toContain("vllm-key");
  }, 600_000);

  it("runs a hand-off command for other servers with the documented variables, and takes its name as the target", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-trl-hook-"));
    roots.push(dir);
    const seen = path.join(dir, "seen.txt");
    const options = TrlTrainerOptionsSchema.parse({
      handoffCommand: ["/bin/sh", "-c", `printf '%s|%s|%s|%s|%s' "$ITERALIGN_ADAPTER" "$ITERALIGN_MODEL_NAME" "$ITERALIGN_ITERATION" "$ITERALIGN_BASE_URL" "$ITERALIGN_OUTPUT_HASH" > ${seen}`],
      vllm: { name: "sglang-{iteration}" },
    });
    const common = {
      options,
      run: { output: path.join(dir, "adapter"), outputHash: "abc123", mode: "lora", method: "sft", precision: "fp32", phases: [], seconds: 0, tokensSeen: 0, peakRssBytes: 0, versions: {} },
      iteration: 2,
      base: { provider: "openai-compatible", model: "org/base-7b" },
      current: { provider: "openai-compatible", model: "org/base-7b" },
      hfBase: "org/base-7b",
      outDir: dir,
      python: "python3",
      cacheDir: dir,
      target: { provider: "openai-compatible", baseUrls: ["http://sglang:30000/v1"] },
      signal: new AbortController().signal,
      onProgress: () => undefined,
    };
    const done = await handOff(common);
    expect(done.model).toEqual({ provider: "openai-compatible", model: "sglang-002", revision: "abc123" });
    expect(readFileSync(seen, "utf8")).toBe(`${path.join(dir, "adapter")}|sglang-002|2|http://sglang:30000/v1|abc123`);
    // A failing command fails the hand-off, quoting its output.
    const failing = TrlTrainerOptionsSchema.parse({ handoffCommand: ["/bin/sh", "-c", "echo server refused; exit 3"] });
    await expect(handOff({ ...common, options: failing })).rejects.toThrow(/handoffCommand failed \(exit 3\): server refused/);
  });

  it("says how to start vLLM when the server has no runtime LoRA endpoint", async () => {
    expect(serverRoot("http://host:8000/v1/")).toBe("http://host:8000");
    expect(serverRoot("http://host:8000")).toBe("http://host:8000");
    const bare = await startFakeServer((_req, res) => sendJson(res, 404, { detail: "Not Found" }));
    try {
      const adapterDir = mkdtempSync(path.join(tmpdir(), "iteralign-trl-adapter-"));
      roots.push(adapterDir);
      const options = TrlTrainerOptionsSchema.parse({ lora: { rank: 32 } });
      const attempt = handOff({
        options,
        run: { output: adapterDir, outputHash: "h", mode: "lora", method: "sft", precision: "fp32", phases: [], seconds: 0, tokensSeen: 0, peakRssBytes: 0, versions: {} },
        iteration: 4,
        base: { provider: "openai-compatible", model: "org/base-7b" },
        current: { provider: "openai-compatible", model: "org/base-7b" },
        hfBase: "org/base-7b",
        outDir: adapterDir,
        python: "python3",
        cacheDir: adapterDir,
        target: { provider: "openai-compatible", baseUrls: [bare.baseUrl] },
        signal: new AbortController().signal,
        onProgress: () => undefined,
      });
      await expect(attempt).rejects.toThrow(/has no \/v1\/load_lora_adapter: start it with --enable-lora --max-lora-rank 32 and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True/);
    } finally {
      await bare.close();
    }
  });
});
