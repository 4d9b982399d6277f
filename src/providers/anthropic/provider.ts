import { IterAlignError } from "../../spec/errors.js";
import { generationDefaults } from "../model-config-fields.js";
import { apiKeyOf } from "../openai-compatible/provider.js";
import type { ModelRef, ProviderDefinition } from "../provider.js";
import { AnthropicModelConfigSchema, type AnthropicModelConfig } from "./config.js";

/** Anthropic's Messages API, natively: tool-use structured output, prompt caching, its rate-limit headers. */
export const anthropicProvider: ProviderDefinition<AnthropicModelConfig> = {
  id: "anthropic",
  configSchema: AnthropicModelConfigSchema,
  defaultConcurrency: 8,
  adaptive: true,
  async create(name, config, context) {
    const { AnthropicModel } = await import("./anthropic-model.js");
    const apiKey = apiKeyOf(name, config.apiKeyEnv, context.env);
    return new AnthropicModel({
      baseUrl: config.baseUrl,
      model: config.model,
      anthropicVersion: config.anthropicVersion,
      timeoutMs: config.timeoutMs,
      promptCaching: config.promptCaching,
      defaults: generationDefaults(config),
      ...(apiKey ? { apiKey } : {}),
      ...(context.rateLimits ? { rateLimits: context.rateLimits } : {}),
    });
  },
  endpoint: (_name, config) => `anthropic:${config.baseUrl}`,
  async modelRef(config): Promise<ModelRef> {
    return { provider: "anthropic", model: config.model };
  },
  resolveTrainedModel(model, _baseDir, what) {
    throw new IterAlignError("TRAINING_FAILED", `${what}: ${model} cannot be served by the anthropic provider (no fine-tuning API to hand off to)`);
  },
  stillExists: () => true,
  withTrainedModel(_config, ref) {
    throw new IterAlignError("TRAINING_FAILED", `the trained model (${ref.provider}: ${ref.model}) cannot be served by the anthropic provider: Anthropic offers no fine-tuning API iteralign can hand off to`);
  },
};
