import { z } from "zod";
import { BaseUrlSchema } from "../util/url.js";
import { BUNDLED_DATASET_NAMES } from "../datasets/bundled.js";
import { UserDatasetSpecSchema } from "../datasets/mapping.js";
import { CommandTrainerOptionsSchema } from "../train/command-trainer.js";
import { LlamaCppTrainerOptionsSchema } from "../train/llama-cpp-trainer.js";
import { OpenAITrainerOptionsSchema } from "../train/openai-trainer.js";

/** Defaults a model applies to every call unless the call sets its own. */
const generationDefaults = {
  temperature: z.number().min(0).max(2).optional().describe("Sampling temperature; 0 is greedy decoding."),
  maxTokens: z.number().int().positive().optional().describe("Most new tokens per answer."),
  topP: z.number().gt(0).max(1).optional().describe("Nucleus sampling mass (used when temperature > 0)."),
  seed: z.number().int().nonnegative().optional().describe("Sampling seed (used when temperature > 0)."),
  frequencyPenalty: z.number().min(-2).max(2).optional().describe("Penalty per earlier occurrence of a token."),
  presencePenalty: z.number().min(-2).max(2).optional().describe("Penalty for any earlier occurrence of a token."),
};

const GenerationParamsConfigSchema = z.object(generationDefaults).strict();

/** Node's timers fire at once for longer delays, so a larger limit would fail every call. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** How calls to a model are made robust. */
const callPolicy = {
  timeoutMs: z
    .number()
    .int()
    .positive()
    .max(MAX_TIMEOUT_MS, `at most ${MAX_TIMEOUT_MS} ms (about 24.8 days), the longest timer Node.js keeps`)
    .default(600_000)
    .describe("Per-call time limit in milliseconds."),
  retries: z.number().int().min(0).max(20).default(3).describe("Retries of a call that failed for a retryable reason."),
  concurrency: z
    .number()
    .int()
    .positive()
    .optional()
    .describe(
      "Most calls in flight at once (default: no limit for llama-cpp, whose engine queues calls into decode groups itself; 8 for HTTP providers).",
    ),
};

export const LlamaCppModelConfigSchema = z
  .object({
    provider: z.literal("llama-cpp").describe("Embedded llama.cpp engine (node-llama-cpp)."),
    model: z
      .string()
      .min(1)
      .describe("GGUF path (relative to the config file) or `hf:<user>/<repo>:<quant>` URI, downloaded once."),
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
    ...generationDefaults,
    ...callPolicy,
  })
  .strict();

export const OpenAICompatibleModelConfigSchema = z
  .object({
    provider: z.literal("openai-compatible").describe("Any OpenAI-style HTTP API: vLLM, Ollama, llama-server, OpenAI."),
    baseUrl: BaseUrlSchema.describe("API root including `/v1`, e.g. `http://127.0.0.1:8000/v1`."),
    model: z.string().min(1).describe("Model name the server expects."),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional()
      .describe("Name of the environment variable holding the API key (keys never go in config files)."),
    structuredOutput: z
      .enum(["json_schema", "json_object", "none"])
      .default("json_schema")
      .describe("How structured output is requested from the server."),
    scoring: z
      .enum(["echo", "none"])
      .default("none")
      .describe("`echo`: log-likelihoods through /completions with echo+logprobs (vLLM supports it; llama-server does not)."),
    embeddings: z.boolean().default(false).describe("The server offers /embeddings for this model."),
    ...generationDefaults,
    ...callPolicy,
  })
  .strict();

export const ModelConfigSchema = z.discriminatedUnion("provider", [
  LlamaCppModelConfigSchema,
  OpenAICompatibleModelConfigSchema,
]);

export const RolesConfigSchema = z
  .object({
    target: z.string().min(1).describe("Model being aligned (name of an entry in `models`)."),
    oracle: z.string().min(1).describe("Stronger model that judges and proposes constitutions."),
    judge: z.string().min(1).optional().describe("Model that labels answers; defaults to the oracle."),
    embedder: z.string().min(1).optional().describe("Model used for embeddings (constitution dedup)."),
  })
  .strict();

export const DatasetRefSchema = z.union([
  z
    .object({
      bundled: z.enum(BUNDLED_DATASET_NAMES).describe("A red-team set shipped with iteralign."),
      includeContextual: z.boolean().default(false).describe("HarmBench only: also use the contextual behaviours."),
    })
    .strict(),
  UserDatasetSpecSchema,
]);

export const DataConfigSchema = z
  .object({
    redTeam: z
      .array(DatasetRefSchema)
      .min(1)
      .default([{ bundled: "harmfulqa", includeContextual: false }])
      .describe("Red-team prompt sets: `{bundled: name}` or `{file, promptField, ...}` for your own JSONL/JSON/CSV(.gz)."),
    chainOfUtterances: z.boolean().default(false).describe("Wrap prompts in the Chain-of-Utterances jailbreak (the paper's setting)."),
    heldoutFraction: z.number().min(0).max(0.9).default(0.2).describe("Share of prompts kept out of the loop for evaluation."),
    seed: z.number().int().nonnegative().default(0).describe("Seed of the train/heldout split."),
    limit: z.number().int().positive().optional().describe("Use at most this many train prompts (in split order)."),
  })
  .strict();

export const LoopConfigSchema = z
  .object({
    batchSize: z.number().int().positive().default(20).describe("Red-team prompts per iteration (the paper: 20)."),
    maxIterations: z.number().int().positive().optional().describe("Stop after this many iterations."),
    stopAfterCleanBatches: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("Stop after this many consecutive batches without failures."),
    tokenBudget: z.number().int().positive().optional().describe("Stop once the run's engine tokens exceed this."),
    maxErrorRate: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe(
        "Stop when more than this share of the items an iteration's stages attempted end in errors (checked after each stage; a stage whose every item fails always stops). `--resume` retries the failed items.",
      ),
    judge: z.enum(["full", "paper"]).default("full").describe("`full`: sees prompt and response; `paper`: response only."),
    selfCorrect: z.enum(["paper", "critique-revise"]).default("paper").describe("How the target revises its answers."),
    topKPrinciples: z.number().int().nonnegative().default(3).describe("Extra most-relevant pool principles per revision."),
    mergeThreshold: z.number().min(0).max(1).optional().describe("Similarity above which proposals are checked for merging."),
    seedConstitutions: z.string().optional().describe("File of seed principles (ours, or the CAI JSON formats)."),
    redTeam: GenerationParamsConfigSchema.default({ temperature: 0, maxTokens: 500, frequencyPenalty: 0.5 }).describe(
      "Sampling of red-team answers (the paper: greedy, 500 tokens, frequency penalty 0.5).",
    ),
  })
  .strict();

export const TrainConfigSchema = z
  .object({
    trainer: z
      .enum(["none", "in-context", "llama-cpp", "openai", "command"])
      .default("none")
      .describe(
        "`none`: export data only; `in-context`: the next iteration's target gets the active constitution as a system prompt; `llama-cpp`: fine-tune the target GGUF (masked SFT); `openai`: a hosted fine-tuning job; `command`: your own trainer command.",
      ),
    llamaCpp: LlamaCppTrainerOptionsSchema.optional().describe("Options of the `llama-cpp` trainer."),
    openai: OpenAITrainerOptionsSchema.optional().describe("Options of the `openai` trainer."),
    command: CommandTrainerOptionsSchema.optional().describe("Options of the `command` trainer (required with it)."),
  })
  .strict()
  .superRefine((train, ctx) => {
    if (train.trainer === "command" && !train.command)
      ctx.addIssue({ code: "custom", path: ["command"], message: "the command trainer needs train.command.command" });
  });

export const EvalConfigSchema = z
  .object({
    benchmarks: z
      .string()
      .default("")
      .describe("Benchmarks to run on the target, e.g. `truthfulqa,asr,xstest,mc:my.jsonl` (empty: none)."),
    when: z
      .enum(["base-and-trained", "every-iteration", "base"])
      .default("base-and-trained")
      .describe("Evaluate the target before the first iteration and after every trained iteration, after every iteration, or only before."),
    mode: z.enum(["loglik", "generative"]).default("loglik").describe("Scoring mode of the multiple-choice benchmarks."),
    limit: z.number().int().positive().optional().describe("At most this many items per benchmark."),
    hhhFile: z.string().optional().describe("Anthropic's HHH comparisons JSONL (not bundled), relative to the config file."),
    bigbenchDir: z.string().optional().describe("Folder with BIG-bench's hhh_alignment task.json files."),
  })
  .strict();

export const ConfigSchema = z
  .object({
    $schema: z.string().optional().describe("Path or URL of this file's JSON Schema (for editors)."),
    models: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]+$/, "model names use letters, digits, '_', '.', '-'"), ModelConfigSchema)
      .refine((m) => Object.keys(m).length > 0, "define at least one model")
      .describe("Models by name."),
    roles: RolesConfigSchema.describe("Which model plays which role."),
    engine: z
      .object({
        maxThreads: z
          .number()
          .int()
          .nonnegative()
          .optional()
          .describe("Upper bound on CPU threads for all embedded models (default: the cores available to iteralign; 0 = no limit)."),
      })
      .strict()
      .default({})
      .describe("Embedded engine settings shared by all llama-cpp models."),
    cache: z
      .object({ enabled: z.boolean().default(true).describe("Reuse answers of identical deterministic calls.") })
      .strict()
      .default({ enabled: true })
      .describe("Response cache (content-addressed, in the store)."),
    data: DataConfigSchema.default(DataConfigSchema.parse({})).describe("Red-team data and the train/heldout split."),
    loop: LoopConfigSchema.default(LoopConfigSchema.parse({})).describe("The IterAlign loop."),
    train: TrainConfigSchema.default({ trainer: "none" }).describe("What happens with each iteration's training data."),
    eval: EvalConfigSchema.default(EvalConfigSchema.parse({})).describe("Benchmarks run on the target during `iteralign run`."),
    runsDir: z.string().min(1).default("runs").describe("Where run outputs go, relative to the config file."),
    store: z
      .object({
        path: z.string().min(1).default(".iteralign/iteralign.db").describe("SQLite file, relative to the config file."),
      })
      .strict()
      .default({ path: ".iteralign/iteralign.db" })
      .describe("Run store."),
  })
  .strict()
  .superRefine((config, ctx) => {
    const names = Object.keys(config.models);
    for (const [role, name] of Object.entries(config.roles)) {
      if (name !== undefined && !(name in config.models)) {
        ctx.addIssue({
          code: "custom",
          path: ["roles", role],
          message: `unknown model '${name}' (defined: ${names.join(", ")})`,
        });
      }
    }
  });

export type ModelConfig = z.infer<typeof ModelConfigSchema>;
export type LlamaCppModelConfig = z.infer<typeof LlamaCppModelConfigSchema>;
export type OpenAICompatibleModelConfig = z.infer<typeof OpenAICompatibleModelConfigSchema>;
export type IterAlignConfig = z.infer<typeof ConfigSchema>;
export type IterAlignConfigInput = z.input<typeof ConfigSchema>;
