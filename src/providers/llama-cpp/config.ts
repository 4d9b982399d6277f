import { z } from "zod";
import { callPolicyFields, generationDefaultFields, judgeFields, MAX_TIMEOUT_MS } from "../model-config-fields.js";

/** A model entry with `provider: llama-cpp`: a GGUF run by the embedded engine. */
export const LlamaCppModelConfigSchema = z
  .object({
    provider: z.literal("llama-cpp").describe("Embedded llama.cpp engine (node-llama-cpp)."),
    model: z
      .string()
      .min(1)
      .describe(
        "GGUF path (relative to the config file), `hf:<user>/<repo>:<quant>` URI (downloaded once), or a Hugging Face model folder (converted once with llama.cpp's convert_hf_to_gguf.py into the cache).",
      ),
    lora: z
      .array(z.string().min(1))
      .optional()
      .describe("GGUF LoRA adapters (paths relative to the config file) applied to `model` at scale 1, in order (e.g. made by `convert_lora_to_gguf.py`)."),
    contextSize: z.number().int().min(64).default(4096).describe("Context window of each parallel sequence, in tokens."),
    sequences: z.number().int().min(1).max(64).default(4).describe("Parallel sequences decoded together in one batch."),
    batchSize: z.number().int().positive().optional().describe("Tokens per decode batch (default: llama.cpp's)."),
    threads: z.number().int().nonnegative().optional().describe("CPU threads for this model (default: engine.maxThreads)."),
    gpu: z.union([z.literal(false), z.literal("auto")]).default(false).describe("`auto` uses CUDA/Metal/Vulkan if present."),
    flashAttention: z
      .boolean()
      .default(false)
      .describe("Faster on GPUs; changes log-likelihoods by ~1e-4 depending on batching."),
    downloadConnectTimeoutMs: z
      .number()
      .int()
      .positive()
      .max(MAX_TIMEOUT_MS)
      .default(30_000)
      .describe("`hf:`/URL models: how long the server may take to start sending the file."),
    downloadIdleTimeoutMs: z
      .number()
      .int()
      .positive()
      .max(MAX_TIMEOUT_MS)
      .default(60_000)
      .describe("`hf:`/URL models: longest pause between received bytes before the download fails."),
    chatTemplate: z
      .enum(["auto", "jinja"])
      .default("auto")
      .describe("`auto`: node-llama-cpp's wrapper equivalent to the GGUF's template; `jinja`: render the GGUF's Jinja template."),
    generation: z
      .enum(["auto", "native", "engine"])
      .default("auto")
      .describe(
        "Plain generation (no JSON schema, no streaming): `native` decodes each decode group in `iteralign-generate` (built by `iteralign setup`), one batch per step with sampling next to the logits, as llama-batched-bench does; `engine` in node-llama-cpp; `auto`: native when built and the model runs on the CPU. Greedy answers agree between the two up to float differences of batching.",
      ),
    prefixReuseMinTokens: z
      .number()
      .int()
      .min(0)
      .default(64)
      .describe(
        "Shared-prefix reuse: a decode group's common prompt prefix at least this long (instructions, a constitution) is evaluated once and its KV state given to the group's other sequences; 0 turns it off. Outputs are the same either way.",
      ),
    ...generationDefaultFields,
    ...callPolicyFields,
    ...judgeFields,
  })
  .strict();

export type LlamaCppModelConfig = z.infer<typeof LlamaCppModelConfigSchema>;
