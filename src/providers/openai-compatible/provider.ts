import path from "node:path";
import { IterAlignError } from "../../spec/errors.js";
import { generationDefaults } from "../model-config-fields.js";
import type { BatchCollector } from "../http/batch.js";
import type { ModelRef, ProviderContext, ProviderDefinition } from "../provider.js";
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
    const batch = await batchCollector(name, config, context, apiKey);
    return new OpenAICompatibleModel({
      ...(batch ? { batch } : {}),
      baseUrl: baseUrls(config),
      model: config.model,
      timeoutMs: config.timeoutMs,
      structuredOutput: config.structuredOutput,
      scoring: config.scoring,
      embeddings: config.embeddings,
      defaults: generationDefaults(config),
      ...(config.revision !== undefined ? { revision: config.revision } : {}),
      serverIdentity: config.serverIdentity,
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

/** The batch collector of an entry with `batch` set: OpenAI's Batch API on its (first) base URL, or batch files. */
async function batchCollector(
  name: string,
  config: OpenAICompatibleModelConfig,
  context: ProviderContext,
  apiKey: string | undefined,
): Promise<BatchCollector | undefined> {
  if (config.batch === undefined) return undefined;
  const { BatchCollector } = await import("../http/batch.js");
  const { BatchFileBackend, OpenAIBatchBackend } = await import("./openai-batch.js");
  const { RestClient } = await import("../http/rest-client.js");
  const options = { ...(context.batchLog ? { log: context.batchLog } : {}), ...(context.notify ? { notify: (m: string) => context.notify?.(`models.${name}: ${m}`) } : {}) };
  if (config.batch === "file") {
    const folder = path.resolve(context.baseDir, config.batchDir ?? path.join(context.dataDir ?? ".iteralign", "batches"));
    return new BatchCollector(new BatchFileBackend(folder, config.model, config.batchPollMs, options.notify), options);
  }
  const api = new RestClient({
    baseUrl: baseUrls(config)[0] as string,
    ...(apiKey ? { apiKey } : {}),
    fetch: globalThis.fetch,
    requestTimeoutMs: config.timeoutMs,
    retries: config.retries,
    retryDelayMs: 1000,
  });
  return new BatchCollector(new OpenAIBatchBackend(api, config.batchPollMs), options);
}
