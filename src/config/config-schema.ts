import { z } from "zod";
import { transformById } from "../attacks/transforms.js";
import { ModelConfigSchema } from "../providers/builtin.js";
import { GenerationParamsConfigSchema } from "../providers/model-config-fields.js";
import { BUNDLED_DATASET_NAMES } from "../datasets/bundled.js";
import { UserDatasetSpecSchema } from "../datasets/mapping.js";
import { CommandTrainerOptionsSchema } from "../train/command-trainer.js";
import { LlamaCppTrainerOptionsSchema } from "../train/llama-cpp-trainer-options.js";
import { OpenAITrainerOptionsSchema } from "../train/openai-trainer.js";
import { TrlTrainerOptionsSchema } from "../train/trl-options.js";

export { LlamaCppModelConfigSchema } from "../providers/llama-cpp/config.js";
export { OpenAICompatibleModelConfigSchema } from "../providers/openai-compatible/config.js";
export { AnthropicModelConfigSchema } from "../providers/anthropic/config.js";
export { ModelConfigSchema } from "../providers/builtin.js";

export const RolesConfigSchema = z
  .object({
    target: z.string().min(1).describe("Model being aligned (name of an entry in `models`)."),
    oracle: z.string().min(1).describe("Stronger model that judges and proposes constitutions."),
    judge: z.string().min(1).optional().describe("Model that labels answers; defaults to the oracle."),
    embedder: z.string().min(1).optional().describe("Model used for embeddings (constitution dedup)."),
    attacker: z.string().min(1).optional().describe("Model that writes new red-team requests with `loop.attacks` (default: the oracle)."),
    judges: z
      .array(z.string().min(1))
      .min(2)
      .optional()
      .describe(
        "Several judges for the judge stage, combined by `loop.judgeRule` (in `cascade` the first is the cheap one that decides clear cases); their agreement is in each iteration's metrics. The gate keeps `judge`.",
      ),
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
    costBudget: z
      .number()
      .positive()
      .optional()
      .describe(
        "Dollars the run may spend (at the models' prices). Checked before each stage is dispatched: a stage whose estimated cost would pass it is not started, and the run stops with a resume hint (`--cost-budget` raises it on resume).",
      ),
    maxErrorRate: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe(
        "Stop when more than this share of the items an iteration's stages attempted end in errors (checked after each stage; a stage whose every item fails always stops). `--resume` retries the failed items.",
      ),
    judge: z.enum(["full", "paper"]).default("full").describe("`full`: sees prompt and response; `paper`: response only."),
    judgeRule: z
      .enum(["all", "majority", "cascade"])
      .default("majority")
      .describe(
        "With `roles.judges`: `all` passes an answer only when every judge passes it; `majority` when more than half do (a tie fails); `cascade` asks the judges in order and goes on only when a judge is unsure (severity low, a verdict that contradicts itself, or no answer).",
      ),
    selfCorrect: z.enum(["paper", "critique-revise"]).default("paper").describe("How the target revises its answers."),
    topKPrinciples: z.number().int().nonnegative().default(3).describe("Extra most-relevant pool principles per revision."),
    mergeThreshold: z.number().min(0).max(1).optional().describe("Similarity above which proposals are checked for merging."),
    seedConstitutions: z.string().optional().describe("File of seed principles (ours, or the CAI JSON formats)."),
    calibration: z
      .object({
        data: z.string().min(1).default("harmbench-val").describe("`harmbench-val` (bundled, 602 answers with three human labels each) or a file of labelled answers, relative to the config file."),
        limit: z.number().int().positive().optional().describe("Judge only the first N items."),
        preset: z.enum(["asr", "full", "paper"]).optional().describe("Which judge prompt to calibrate (default: the loop's `loop.judge`)."),
      })
      .strict()
      .optional()
      .describe(
        "Judge a human-labelled set once at the start of the run with the judge role, so the run's numbers come with how far its judge agrees with people: accuracy, precision, recall, F1 and Cohen's kappa in `calibration.json`, `summary.json` and the report.",
      ),
    efficacy: z
      .object({
        samples: z.number().int().positive().default(4).describe("Leave-one-out trials per principle per iteration (each costs a revision and a gate call)."),
      })
      .strict()
      .optional()
      .describe(
        "Measure what each principle does: some of the revisions written under it are written again without it and gated again; fixes it accounts for and over-refusals it causes go to `iterations/NNN/efficacy.json`. On with `loop.retire`.",
      ),
    retire: z
      .object({
        minUses: z.number().int().positive().default(3).describe("Revisions a principle must have been used in (over the run) before it can be retired."),
        minEfficacy: z.number().min(0).max(1).default(0.1).describe("Retire a principle that fixes less than this share of its leave-one-out trials."),
        maxOverRefusal: z.number().min(0).max(1).default(0.5).describe("Retire a principle that causes over-refusals in more than this share of its trials."),
      })
      .strict()
      .optional()
      .describe("Retire principles that do not earn their place (measured by `loop.efficacy`): retired principles no longer reach revision prompts or the in-context system prompt."),
    redTeam: GenerationParamsConfigSchema.default({ temperature: 0, maxTokens: 500, frequencyPenalty: 0.5 }).describe(
      "Sampling of red-team answers (the paper: greedy, 500 tokens, frequency penalty 0.5).",
    ),
    attacks: z
      .object({
        fresh: z.number().min(0).max(1).default(0.5).describe("Share of each batch that is new attacks written against the current target."),
        replay: z.number().min(0).max(1).default(0.25).describe("Share of each batch that replays earlier failures (regression check)."),
        perCategory: z.number().int().positive().default(4).describe("Requests the attacker writes per category per iteration (before deduplication and screening)."),
        categories: z
          .array(z.string().min(1))
          .optional()
          .describe("Your topics to write attacks for, besides the categories of the iteration's train-split prompts (`general` when there are none)."),
        strategies: z
          .array(z.string().min(1))
          .default(["plain"])
          .describe("Transforms given to the new attacks in turn: `plain`, `base64`, `leetspeak[:light]`, `homoglyph`, `persona:<novelist|red-team-auditor|opposite-day|historian>`, `chain-of-utterances`."),
        heldoutStrategies: z
          .array(z.string().min(1))
          .optional()
          .describe(
            "Strategies for the held-out attacks (default: `strategies`): the static ones, and adaptive ones that play against the target: `pair:<K>` (rewrites after each refusal, up to K rounds), `escalation:<turns>` (a multi-turn conversation), `translation:<language>` (a round-trip through the attacker).",
          ),
        heldoutShare: z
          .number()
          .min(0)
          .max(0.9)
          .default(0.25)
          .describe("Share of the accepted new attacks kept out of training: their attack success, per strategy and category, is measured on the current target and never trained on."),
        temperature: z.number().min(0).max(2).default(0.9).describe("The attacker's sampling temperature (seeded per iteration and category, so runs repeat)."),
        seed: z.number().int().nonnegative().default(0).describe("Seed of the attacker's sampling."),
      })
      .strict()
      .refine((a) => a.fresh + a.replay < 1, { message: "fresh + replay must leave a share of the batch for the train split (below 1)" })
      .superRefine((a, ctx) => {
        const check = (field: "strategies" | "heldoutStrategies", adaptiveAllowed: boolean) =>
          (a[field] ?? []).forEach((id, i) => {
            if (id === "plain") return;
            if (/^(pair|escalation|translation):/.test(id)) {
              if (!adaptiveAllowed) ctx.addIssue({ code: "custom", path: [field, i], message: `'${id}' plays against the target: put it in heldoutStrategies` });
              else if (!/^(pair|escalation):[1-9]\d*$|^translation:\S.*$/.test(id)) ctx.addIssue({ code: "custom", path: [field, i], message: `'${id}': use pair:<rounds>, escalation:<turns> or translation:<language>` });
              return;
            }
            try {
              transformById(id);
            } catch (error) {
              ctx.addIssue({ code: "custom", path: [field, i], message: (error as Error).message });
            }
          });
        check("strategies", false);
        check("heldoutStrategies", true);
      })
      .optional()
      .describe(
        "Adaptive red teaming: each batch mixes new attacks written by `roles.attacker` against the current target (deduplicated against every prompt used and every evaluation set, screened by the judge), a replay of earlier failures, and the train split; see docs/attacks.md.",
      ),
  })
  .strict();

export const TrainConfigSchema = z
  .object({
    trainer: z
      .enum(["none", "in-context", "llama-cpp", "trl", "openai", "command"])
      .default("none")
      .describe(
        "`none`: export data only; `in-context`: the next iteration's target gets the active constitution as a system prompt; `llama-cpp`: fine-tune the target GGUF (masked SFT); `trl`: LoRA/QLoRA/full SFT or DPO with Hugging Face TRL in a Python environment, handed to a llama-cpp or vLLM target; `openai`: a hosted fine-tuning job; `command`: your own trainer command.",
      ),
    llamaCpp: LlamaCppTrainerOptionsSchema.optional().describe("Options of the `llama-cpp` trainer."),
    trl: TrlTrainerOptionsSchema.optional().describe("Options of the `trl` trainer."),
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
    bos: z
      .enum(["model", "none"])
      .default("model")
      .describe(
        "Loglik scoring: `model` starts each context with a BOS token where the model's tokenizer asks for one; `none` never does, as lm-evaluation-harness does by default (to reproduce its numbers).",
      ),
    limit: z.number().int().positive().optional().describe("At most this many items per benchmark."),
    hhhFile: z.string().optional().describe("Anthropic's HHH comparisons JSONL (not bundled), relative to the config file."),
    bigbenchDir: z.string().optional().describe("Folder with BIG-bench's hhh_alignment task.json files."),
  })
  .strict();

/** `export`: what happens to an iteration's training examples before they are written. */
export const ExportConfigSchema = z
  .object({
    decontaminate: z
      .boolean()
      .default(false)
      .describe(
        "Drop training examples whose prompt matches an evaluation set in use (the held-out split, the `eval.benchmarks` and `export.checkAgainst` sets): same normalized text, a shared run of `ngram` words, or a near duplicate. The check itself always runs and writes `iterations/NNN/contamination.json`.",
      ),
    checkAgainst: z
      .string()
      .default("")
      .describe(
        "More evaluation sets to check the training prompts against, in `eval.benchmarks` syntax (e.g. `truthfulqa,xstest,mc:my.jsonl`), for benchmarks you run after the loop with `iteralign eval`.",
      ),
    ngram: z.number().int().min(3).max(50).default(13).describe("Words in a shared run that counts as overlap (lm-evaluation-harness's decontamination uses 13)."),
    nearDuplicateThreshold: z
      .number()
      .min(0.5)
      .max(1)
      .default(0.8)
      .describe("Estimated Jaccard similarity (MinHash of character 5-grams) at or above which two prompts are near duplicates."),
  })
  .strict();

/** `pricing`: where model prices come from. */
export const PricingConfigSchema = z
  .object({
    file: z
      .string()
      .optional()
      .describe(
        "YAML or JSON file of prices by model name (`{models: {<name>: {input, output, cachedInput, cacheWrite, batchDiscount}}}`, dollars per million tokens), relative to the config file; overrides the built-in list prices.",
      ),
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
          .describe(
            "CPU threads for all embedded models. Unset: the cores available to iteralign, lowered while other processes keep cores busy (ggml's threads wait on each other: with one busy core beside it, 2 threads on 2 cores ran 3x slower than 1). A number fixes it; 0 = no limit.",
          ),
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
    export: ExportConfigSchema.default(ExportConfigSchema.parse({})).describe("Checks on the training examples before they are written."),
    runsDir: z.string().min(1).default("runs").describe("Where run outputs go, relative to the config file."),
    pricing: PricingConfigSchema.optional().describe("Where model prices come from (a model's own `pricing` wins)."),
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
    for (const [role, value] of Object.entries(config.roles)) {
      const list = Array.isArray(value) ? value.map((name, i) => ({ name, path: ["roles", role, i] })) : [{ name: value, path: ["roles", role] }];
      for (const { name, path } of list) {
        if (name !== undefined && !(name in config.models)) {
          ctx.addIssue({ code: "custom", path, message: `unknown model '${name}' (defined: ${names.join(", ")})` });
        } else if (name !== undefined && role !== "judges" && config.models[name]?.guard !== undefined) {
          // A guard only labels answers in its own format; every other role needs a model that follows our prompts.
          ctx.addIssue({ code: "custom", path, message: `'${name}' is a guard classifier (models.${name}.guard): it can judge only in roles.judges (the gate keeps an LLM judge)` });
        }
      }
    }
  });

export type { ModelConfig } from "../providers/builtin.js";
export type { LlamaCppModelConfig } from "../providers/llama-cpp/config.js";
export type { OpenAICompatibleModelConfig } from "../providers/openai-compatible/config.js";
export type { AnthropicModelConfig } from "../providers/anthropic/config.js";
export type IterAlignConfig = z.infer<typeof ConfigSchema>;
export type IterAlignConfigInput = z.input<typeof ConfigSchema>;
