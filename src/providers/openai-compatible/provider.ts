import path from "node:path";
import { IterAlignError } from "../../spec/errors.js";
import { generationDefaults } from "../model-config-fields.js";
import type { ModelRef, ProviderDefinition } from "../provider.js";
import { OpenAICompatibleModelConfigSchema, type OpenAICompatibleModelConfig } from "./config.js";

/** The entry's base URLs, as a list (one, or a pool of replicas). */
export function baseUrls(config: Pick<OpenAICompatibleModelConfig, "baseUrl">): string[] {
  return Array.isArray(config.baseUrl) ? [...config.baseUrl] : [config.baseUrl];
}

/** The API key an entry names with `apiKeyEnv`, checked to be set. */
export function apiKeyOf(name: string, apiKeyEnv: string | undefined, env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (!apiKeyEnv) return undefined;
  const key = env[apiKeyEnv];
  if (!key) throw new IterAlignError("CONFIG_INVALID", `models.${name}.apiKeyEnv: environment variable ${apiKeyEnv} is not set`);
  return key;
}

/** Any server speaking OpenAI's chat completions API: vLLM, llama-server, Ollama, SGLang, OpenAI. */
export const openAICompatibleProvider: ProviderDefinition<OpenAICompatibleModelConfig> = {
  id: "openai-compatible",
  configSchema: OpenAICompatibleModelConfigSchema,
  defaultConcurrency: 8,
  adaptive: true,
  async create(name, config, context) {
    const { OpenAICompatibleModel } = await import("./openai-compatible-model.js");
    const apiKey = apiKeyOf(name, config.apiKeyEnv, context.env);
    return new OpenAICompatibleModel({
      baseUrl: baseUrls(config),
      model: config.model,
      timeoutMs: config.timeoutMs,
      structuredOutput: config.structuredOutput,
      scoring: config.scoring,
      embeddings: config.embeddings,
      defaults: generationDefaults(config),
      ...(config.revision !== undefined ? { revision: config.revision } : {}),
      ...(apiKey ? { apiKey } : {}),
      ...(context.rateLimits ? { rateLimits: context.rateLimits } : {}),
    });
  },
  endpoint: (_name, config) => `http:${baseUrls(config).join(",")}`,
  async modelRef(config): Promise<ModelRef> {
    return { provider: "openai-compatible", model: config.model, ...(config.revision !== undefined ? { revision: config.revision } : {}) };
  },
  resolveTrainedModel(model, baseDir) {
    // A served model is an id; only an explicit relative path (a local checkpoint a server loads) is resolved.
    return { provider: "openai-compatible", model: /^\.\.?[\\/]/.test(model) ? path.resolve(baseDir, model) : model };
  },
  stillExists: () => true,
  withTrainedModel(config, ref) {
    if (ref.provider !== "openai-compatible") {
      throw new IterAlignError("TRAINING_FAILED", `the trained model is a ${ref.provider} model (${ref.model}); an openai-compatible target needs a model its server serves`);
    }
    const { revision: _old, ...rest } = config;
    return { ...rest, model: ref.model, ...(ref.revision !== undefined ? { revision: ref.revision } : {}) };
  },
};
