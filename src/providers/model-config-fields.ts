import { z } from "zod";
import { GuardConfigSchema } from "../spec/guard.js";
import type { GenerationParams } from "../spec/language-model.js";

/**
 * Config fields every provider's model entry shares: generation defaults and the call policy (timeout, retries,
 * concurrency, rate limits, pricing). Each provider's schema spreads these next to its own fields.
 */

/** Node's timers fire at once for longer delays, so a larger limit would fail every call. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Defaults a model applies to every call unless the call sets its own. */
export const generationDefaultFields = {
  temperature: z.number().min(0).max(2).optional().describe("Sampling temperature; 0 is greedy decoding."),
  maxTokens: z.number().int().positive().optional().describe("Most new tokens per answer."),
  topP: z.number().gt(0).max(1).optional().describe("Nucleus sampling mass (used when temperature > 0)."),
  seed: z.number().int().nonnegative().optional().describe("Sampling seed (used when temperature > 0)."),
  frequencyPenalty: z.number().min(-2).max(2).optional().describe("Penalty per earlier occurrence of a token."),
  presencePenalty: z.number().min(-2).max(2).optional().describe("Penalty for any earlier occurrence of a token."),
};

/** The generation defaults as one strict object (the loop's red-team sampling uses it). */
export const GenerationParamsConfigSchema = z.object(generationDefaultFields).strict();

/** Dollars per million tokens. */
export const PriceSchema = z
  .object({
    input: z.number().nonnegative().describe("Dollars per million prompt tokens."),
    output: z.number().nonnegative().describe("Dollars per million generated tokens."),
    cachedInput: z.number().nonnegative().optional().describe("Dollars per million prompt tokens read from the provider's prompt cache (default: input)."),
    cacheWrite: z.number().nonnegative().optional().describe("Dollars per million prompt tokens written to the provider's prompt cache (default: input)."),
    batchDiscount: z.number().min(0).max(1).optional().describe("Share taken off every price for batch jobs (0.5 for OpenAI's and Anthropic's batch APIs)."),
  })
  .strict();
export type Price = z.infer<typeof PriceSchema>;

/** How calls to a model are made robust, paced and paid for. */
export const callPolicyFields = {
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
      "Most calls in flight at once (default: no limit for llama-cpp, whose engine queues calls into decode groups itself; 8 for HTTP providers, adapted between concurrencyFloor and this ceiling).",
    ),
  concurrencyFloor: z.number().int().positive().optional().describe("HTTP providers: fewest calls in flight the adaptive limit goes down to after rate limits (default 1)."),
  rpm: z.number().positive().optional().describe("HTTP providers: most requests per minute to this endpoint (paced, not refused)."),
  tpm: z.number().positive().optional().describe("HTTP providers: most tokens (prompt + maxTokens, estimated) per minute to this endpoint."),
  pricing: PriceSchema.optional().describe("Prices of this model (overrides the built-in table and the pricing file)."),
};

/** How a model serves as a judge: set `guard` to use it as a guard classifier (roles.judges, judge-eval). */
export const judgeFields = {
  guard: GuardConfigSchema.optional().describe(
    "Use this model as a guard classifier (Llama Guard, ShieldGemma, Qwen3Guard style, or your own prompt) when it judges; see docs/judges.md.",
  ),
};

/** Generation defaults of an entry (every provider's entries carry the same ones). */
export function generationDefaults(config: GenerationParams): GenerationParams {
  const out: Record<string, unknown> = {};
  for (const key of ["temperature", "maxTokens", "topP", "seed", "frequencyPenalty", "presencePenalty"] as const) {
    if (config[key] !== undefined) out[key] = config[key];
  }
  return out;
}

