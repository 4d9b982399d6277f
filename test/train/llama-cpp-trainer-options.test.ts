import { describe, expect, it } from "vitest";
import { TrainConfigSchema } from "../../src/config/config-schema.js";
import { finetuneTrainArgs, LlamaCppTrainer, LlamaCppTrainerOptionsSchema } from "../../src/train/llama-cpp-trainer.js";

const RUN = { model: "/m/in.gguf", data: "/w/train-data.jsonl", out: "/w/model.gguf.tmp", workDir: "/w", window: 64, threads: 2 };

describe("llama-cpp trainer GPU options", () => {
  it("trains on the CPU by default", () => {
    const o = LlamaCppTrainerOptionsSchema.parse({});
    expect(o.gpu).toBe("cpu");
    expect(o.gpuLayers).toBeUndefined();
    expect(new LlamaCppTrainer().options.gpu).toBe("cpu");
  });

  it("accepts gpu: cuda with or without gpuLayers", () => {
    expect(LlamaCppTrainerOptionsSchema.parse({ gpu: "cuda" })).toMatchObject({ gpu: "cuda" });
    expect(LlamaCppTrainerOptionsSchema.parse({ gpu: "cuda", gpuLayers: 0 })).toMatchObject({ gpu: "cuda", gpuLayers: 0 });
    expect(new LlamaCppTrainer({ gpu: "cuda", gpuLayers: 20 }).options).toMatchObject({ gpu: "cuda", gpuLayers: 20 });
  });

  it("rejects an unknown backend, gpuLayers without CUDA, and a bad layer count", () => {
    expect(() => new LlamaCppTrainer({ gpu: "rocm" } as never)).toThrow(/gpu/);
    expect(() => new LlamaCppTrainer({ gpuLayers: 10 })).toThrow(/gpuLayers needs gpu: cuda/);
    expect(() => new LlamaCppTrainer({ gpu: "cpu", gpuLayers: 10 })).toThrow(/gpuLayers needs gpu: cuda/);
    expect(() => new LlamaCppTrainer({ gpu: "cuda", gpuLayers: -1 })).toThrow(/gpuLayers/);
    expect(() => new LlamaCppTrainer({ gpu: "cuda", gpuLayers: 1.5 })).toThrow(/gpuLayers/);
  });

  it("the config's train.llamaCpp takes the same keys", () => {
    const ok = TrainConfigSchema.safeParse({ trainer: "llama-cpp", llamaCpp: { gpu: "cuda", gpuLayers: 99 } });
    expect(ok.success && ok.data.llamaCpp).toMatchObject({ gpu: "cuda", gpuLayers: 99 });
    expect(TrainConfigSchema.parse({ trainer: "llama-cpp", llamaCpp: {} }).llamaCpp?.gpu).toBe("cpu");
    const bad = TrainConfigSchema.safeParse({ trainer: "llama-cpp", llamaCpp: { gpuLayers: 99 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["llamaCpp", "gpuLayers"]);
    expect(TrainConfigSchema.safeParse({ trainer: "llama-cpp", llamaCpp: { gpu: "metal" } }).success).toBe(false);
  });
});

describe("iteralign-finetune command line", () => {
  it("a CPU run passes no --gpu-layers", () => {
    const args = finetuneTrainArgs(LlamaCppTrainerOptionsSchema.parse({ epochs: 3, quantize: "q8_0" }), RUN);
    expect(args).toEqual([
      "train",
      ...["--model", "/m/in.gguf", "--data", "/w/train-data.jsonl", "--out", "/w/model.gguf.tmp", "--work-dir", "/w"],
      ...["--epochs", "3", "--lr", "0.00001", "--schedule", "cosine"],
      ...["--warmup", "0.03", "--ctx", "64", "--seed", "0"],
      ...["--threads", "2", "--out-type", "q8_0"],
    ]);
    expect(args).not.toContain("--gpu-layers");
  });

  it("a CUDA run offloads all layers (-1) unless gpuLayers says how many", () => {
    const all = finetuneTrainArgs(LlamaCppTrainerOptionsSchema.parse({ gpu: "cuda" }), RUN);
    expect(all.slice(-2)).toEqual(["--gpu-layers", "-1"]);
    expect(all.filter((a) => a === "--gpu-layers")).toHaveLength(1);
    expect(finetuneTrainArgs(LlamaCppTrainerOptionsSchema.parse({ gpu: "cuda", gpuLayers: 12 }), RUN).slice(-2)).toEqual([
      "--gpu-layers",
      "12",
    ]);
    expect(finetuneTrainArgs(LlamaCppTrainerOptionsSchema.parse({ gpu: "cuda", gpuLayers: 0 }), RUN).slice(-2)).toEqual([
      "--gpu-layers",
      "0",
    ]);
  });
});
