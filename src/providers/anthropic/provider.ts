import { IterAlignError } from "../../spec/errors.js";
import { generationDefaults } from "../model-config-fields.js";
import { apiKeyOf } from "../openai-compatible/provider.js";
import type { BatchCollector } from "../http/batch.js";
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
    let batch: BatchCollector | undefined;
    if (config.batch === "anthropic") {
      const { BatchCollector } = await import("../http/batch.js");
      const { AnthropicBatchBackend } = await import("./anthropic-batch.js");
      const { RestClient } = await import("../http/rest-client.js");
      const api = new RestClient({
        baseUrl: config.baseUrl,
        headers: { "anthropic-version": config.anthropicVersion, ...(apiKey ? { "x-api-key": apiKey } : {}) },
        fetch: globalThis.fetch,
        requestTimeoutMs: config.timeoutMs,
        retries: config.retries,
        retryDelayMs: 1000,
      });
      batch = new BatchCollector(new AnthropicBatchBackend(api, config.batchPollMs), {
        ...(context.batchLog ? { log: context.batchLog } : {}),
        ...(context.notify ? { notify: (m: string) => context.notify?.(`models.${name}: ${m}`) } : {}),
      });
    }
    return new AnthropicModel({
      ...(batch ? { batch } : {}),
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
