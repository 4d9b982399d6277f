import { z } from "zod";
import { BaseUrlSchema } from "../../util/url.js";
import { callPolicyFields, generationDefaultFields, judgeFields } from "../model-config-fields.js";

/** A model entry with `provider: anthropic`: Anthropic's Messages API, natively. */
export const AnthropicModelConfigSchema = z
  .object({
    provider: z.literal("anthropic").describe("Anthropic's Messages API (Claude)."),
    baseUrl: BaseUrlSchema.default("https://api.anthropic.com/v1").describe("API root including `/v1`."),
    model: z.string().min(1).describe("Model name, e.g. `claude-sonnet-4-5`."),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .default("ANTHROPIC_API_KEY")
      .describe("Name of the environment variable holding the API key (sent as `x-api-key`; keys never go in files)."),
    anthropicVersion: z.string().default("2023-06-01").describe("The `anthropic-version` header."),
    promptCaching: z
      .boolean()
      .default(true)
      .describe("Mark the long shared prefix of each call (instructions, constitution, tool schema) with `cache_control`, so repeats are read from Anthropic's prompt cache."),
    batch: z.enum(["anthropic"]).optional().describe("Send each stage's calls as one Message Batch (half price, results within 24 h)."),
    batchPollMs: z.number().int().positive().default(10_000).describe("How often a batch job is checked."),
    ...generationDefaultFields,
    // The Messages API accepts temperatures up to 1.
    temperature: z.number().min(0).max(1).optional().describe("Sampling temperature (0 to 1 on this API); 0 is greedy decoding."),
    ...callPolicyFields,
    ...judgeFields,
  })
  .strict();

export type AnthropicModelConfig = z.infer<typeof AnthropicModelConfigSchema>;
