import { z } from "zod";

/** Settings of the `trl` trainer (Hugging Face TRL + PEFT in a Python environment, CPU or GPUs). */
export const TrlTrainerOptionsSchema = z
  .object({
    python: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Python interpreter with torch, transformers, trl, peft, accelerate, datasets (a path relative to the config file, or a command on PATH). Default: the environment `iteralign setup trl` made, else python3.",
      ),
    baseModel: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Hugging Face model id or folder holding the target's weights (what training starts from). Default for a llama-cpp target: made once from its GGUF (dequantized by transformers; Llama, Qwen2, Mistral, Phi-3, Gemma and other architectures transformers reads from GGUF).",
      ),
    method: z
      .enum(["sft", "dpo", "sft+dpo"])
      .default("sft")
      .describe("sft: supervised fine-tuning on the gated answers (loss on the answer only, in the model's chat template); dpo: preference pairs (gated answer over the original failure); sft+dpo: SFT, then DPO from its result."),
    mode: z
      .enum(["lora", "qlora", "full"])
      .default("lora")
      .describe("lora: train a LoRA adapter (PEFT); qlora: LoRA on a 4-bit base (bitsandbytes, CUDA only); full: every weight."),
    lora: z
      .object({
        rank: z.number().int().min(1).max(1024).default(16).describe("LoRA rank r."),
        alpha: z.number().positive().default(32).describe("LoRA alpha (the update is scaled by alpha / r)."),
        dropout: z.number().min(0).max(0.9).default(0.05).describe("Dropout on the LoRA input."),
        targetModules: z
          .union([z.literal("all-linear"), z.array(z.string().min(1)).min(1)])
          .default("all-linear")
          .describe("Modules that get adapters: all-linear (every linear layer but the output head) or a list of module names (q_proj, v_proj, ...)."),
      })
      .strict()
      .default({ rank: 16, alpha: 32, dropout: 0.05, targetModules: "all-linear" })
      .describe("LoRA settings (mode lora and qlora)."),
    learningRate: z.number().positive().default(2e-4).describe("Peak learning rate (AdamW). LoRA usually wants 1e-4..3e-4; full fine-tuning 1e-5 or less."),
    epochs: z.number().int().min(1).max(100).default(2).describe("Passes over the examples."),
    schedule: z.enum(["constant", "linear", "cosine"]).default("cosine").describe("Learning-rate decay after warm-up."),
    warmupRatio: z.number().min(0).max(0.5).default(0.03).describe("Share of the steps spent ramping the learning rate up."),
    batchSize: z.number().int().min(1).max(4096).default(4).describe("Examples per device per step."),
    gradientAccumulation: z.number().int().min(1).max(4096).default(1).describe("Steps whose gradients are summed before an optimizer update."),
    maxLength: z.number().int().min(16).max(1_048_576).default(1024).describe("Longest example in tokens (prompt + answer); longer ones are truncated."),
    gradientCheckpointing: z
      .boolean()
      .default(false)
      .describe(
        "Recompute each layer's activations in the backward pass instead of keeping them (transformers' gradient checkpointing): less memory for long examples and big batches (what lets a 7B LoRA fit a 24 GB GPU), about a third more compute. The loss is the same.",
      ),
    lossChunk: z
      .union([z.literal("auto"), z.number().int().min(1).max(65_536)])
      .default("auto")
      .describe(
        "SFT: answer tokens whose output-head logits are computed at a time (TRL's chunked loss; each chunk is recomputed in the backward pass). A 152k-token vocabulary takes 0.6 MB of fp32 logits per token, and a chunk holds several such copies and is computed whole even when the answers are shorter. auto: 32 on the CPU, TRL's own size (256) on CUDA. The loss is the same.",
      ),
    seed: z.number().int().min(0).max(2147483647).default(0).describe("Seed of initialization, dropout and example order."),
    precision: z
      .enum(["auto", "bf16", "fp16", "fp32"])
      .default("auto")
      .describe("auto: bf16 where the GPU has it, else fp16 on CUDA, fp32 on CPU. bf16 on the CPU halves the base's memory (slower without AMX/AVX512-BF16); fp16 needs CUDA."),
    dpoBeta: z.number().positive().default(0.1).describe("DPO beta (how far the policy may move from the reference)."),
    device: z.enum(["auto", "cpu", "cuda"]).default("auto").describe("auto: CUDA when torch sees a GPU, else CPU."),
    threads: z.number().int().min(1).max(1024).optional().describe("CPU threads of each training process (torch.set_num_threads)."),
    checkpointSteps: z
      .number()
      .int()
      .min(1)
      .default(50)
      .describe("Save a checkpoint every this many optimizer steps: a killed training resumes from the last one."),
    warmStart: z
      .enum(["previous", "base"])
      .default("previous")
      .describe("previous: continue training the previous iteration's adapter (or model) on this iteration's examples; base: train the base on every iteration's examples so far."),
    launcher: z
      .enum(["python", "accelerate", "torchrun"])
      .default("python")
      .describe("python: one process; accelerate: `accelerate launch` (several GPUs or machines, with acceleratorConfig); torchrun: `torchrun --nproc-per-node`."),
    numProcesses: z.number().int().min(1).max(4096).default(1).describe("Processes of the launcher (one per GPU; on CPU, processes sharing the cores)."),
    acceleratorConfig: z.string().min(1).optional().describe("An accelerate config file (`accelerate config`), passed through with --config_file (relative to the config file)."),
    launcherArgs: z.array(z.string()).default([]).describe("Extra arguments for the launcher, before the script (e.g. --num_machines 2 --machine_rank 0 --main_process_ip ...)."),
    handoff: z
      .enum(["adapter", "merged"])
      .default("adapter")
      .describe(
        "llama-cpp target: adapter (convert the LoRA to a GGUF adapter with llama.cpp's convert_lora_to_gguf.py and load base + adapter) or merged (merge into a new GGUF with llama-export-lora).",
      ),
    mergedType: z
      .enum(["auto", "q8_0"])
      .default("auto")
      .describe("With handoff merged or mode full, the new GGUF's weights: auto (merged: F32 tensors stay F32, others F16, as llama-export-lora writes; full: F32 after fp32 training, else F16) or q8_0 (re-quantized)."),
    vllm: z
      .object({
        load: z.boolean().default(true).describe("openai-compatible target: load the adapter into the running vLLM server(s) through POST /v1/load_lora_adapter."),
        adapterPath: z
          .string()
          .min(1)
          .optional()
          .describe("The adapter folder as the server sees it, with {adapter} (our folder), {iteration} and {name} substituted. Default: our folder (a shared file system)."),
        unloadPrevious: z.boolean().default(false).describe("Unload the previous iteration's adapter once the new one is loaded."),
        name: z.string().min(1).default("{base}-it{iteration}").describe("Name the adapter is served under: {base} (the target's model name), {iteration} (3 digits)."),
      })
      .strict()
      .default({ load: true, unloadPrevious: false, name: "{base}-it{iteration}" })
      .describe("Hand-off to a vLLM server serving the target (openai-compatible provider)."),
    handoffCommand: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        "A command run after training instead of the built-in hand-off (SGLang, TGI, a restart script). Gets ITERALIGN_ADAPTER (the trained folder), ITERALIGN_MODEL_NAME, ITERALIGN_ITERATION, ITERALIGN_BASE_URL; must exit 0 once the server serves ITERALIGN_MODEL_NAME.",
      ),
    timeoutMs: z.number().int().positive().optional().describe("Stop training (its whole process group) after this long."),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.acceleratorConfig !== undefined && o.launcher !== "accelerate") {
      ctx.addIssue({ code: "custom", path: ["acceleratorConfig"], message: "acceleratorConfig needs launcher: accelerate" });
    }
    if (o.numProcesses > 1 && o.launcher === "python") {
      ctx.addIssue({ code: "custom", path: ["numProcesses"], message: "several processes need launcher: accelerate or torchrun" });
    }
    if (o.mode === "qlora" && o.device === "cpu") {
      ctx.addIssue({ code: "custom", path: ["mode"], message: "qlora needs a CUDA device (bitsandbytes 4-bit); use mode lora on the CPU" });
    }
  });

export type TrlTrainerOptions = z.infer<typeof TrlTrainerOptionsSchema>;
export type TrlTrainerOptionsInput = z.input<typeof TrlTrainerOptionsSchema>;
