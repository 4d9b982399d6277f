import { z } from "zod";

/** Settings of the `llama-cpp` trainer (full supervised fine-tuning on this machine's CPU, or an NVIDIA GPU with CUDA). */
export const LlamaCppTrainerOptionsSchema = z
  .object({
    epochs: z.number().int().min(1).max(100).default(2).describe("Passes over the training examples (the paper: 3)."),
    learningRate: z
      .number()
      .positive()
      .default(1e-5)
      .describe(
        "Peak AdamW learning rate. One example per optimizer step, so 1e-5 (5x the paper's 2e-6 at batch 128) moves a small model measurably in a few dozen steps without drifting far from it.",
      ),
    schedule: z
      .enum(["constant", "linear", "cosine"])
      .default("cosine")
      .describe("Learning-rate decay after warm-up: constant, linear to zero, or cosine to zero (the paper)."),
    warmupRatio: z
      .number()
      .min(0)
      .max(0.5)
      .default(0.03)
      .describe("Share of the steps spent ramping the learning rate up linearly (the paper: 0.03)."),
    contextLength: z
      .number()
      .int()
      .min(32)
      .max(131072)
      .default(1024)
      .describe("Longest example in tokens (prompt + answer + end of turn); a longer example loses the end of its answer."),
    warmStart: z
      .enum(["previous", "base"])
      .default("previous")
      .describe(
        "previous: train the model this iteration red-teamed on this iteration's examples (the paper). base: train the config's target on every iteration's examples so far.",
      ),
    quantize: z
      .enum(["none", "q8_0"])
      .default("none")
      .describe("Format of the trained model: none keeps the F32 weights training produced; q8_0 re-quantizes them (4x smaller)."),
    threads: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe("CPU threads for training. Default: all cores. On a machine busy with other work fewer threads train faster (ggml's workers spin while they wait)."),
    seed: z.number().int().min(0).max(2147483647).default(0).describe("Seed of the example order in each epoch."),
    memoryCheck: z
      .boolean()
      .default(true)
      .describe(
        "Before training, estimate the memory full F32 fine-tuning needs from the model's shape and refuse when it exceeds 90% of the machine's (CPU training only). false: try anyway.",
      ),
    chatTemplate: z
      .enum(["auto", "jinja"])
      .default("auto")
      .describe("How prompts are rendered: must match the target model's chatTemplate setting, so training sees what generation sees."),
    gpu: z
      .enum(["cpu", "cuda"])
      .default("cpu")
      .describe(
        "cpu: train on the CPU. cuda: build iteralign-finetune with CUDA (needs the NVIDIA CUDA toolkit's nvcc and a driver; a separate build beside the CPU one) and offload gpuLayers layers to the GPU. Not run in iteralign's CI.",
      ),
    gpuLayers: z
      .number()
      .int()
      .min(0)
      .max(100000)
      .optional()
      .describe("With gpu: cuda, how many of the model's layers to offload to the GPU (0: none). Default: all of them."),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.gpuLayers !== undefined && o.gpu !== "cuda") {
      ctx.addIssue({ code: "custom", path: ["gpuLayers"], message: "gpuLayers needs gpu: cuda (the CPU build offloads nothing)" });
    }
  });

export type LlamaCppTrainerOptions = z.infer<typeof LlamaCppTrainerOptionsSchema>;
export type LlamaCppTrainerOptionsInput = z.input<typeof LlamaCppTrainerOptionsSchema>;
