import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { checkGgufFile } from "../../gguf/gguf-check.js";
import { isHfModelFolder } from "../../native/hf-to-gguf.js";
import { IterAlignError } from "../../spec/errors.js";
import { generationDefaults } from "../model-config-fields.js";
import type { ModelRef, ProviderDefinition } from "../provider.js";
import { LlamaCppModelConfigSchema, type LlamaCppModelConfig } from "./config.js";

function isRemote(ref: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(ref);
}

/** The embedded engine: a GGUF file (or an `hf:` URI) run in process by node-llama-cpp. */
export const llamaCppProvider: ProviderDefinition<LlamaCppModelConfig> = {
  id: "llama-cpp",
  configSchema: LlamaCppModelConfigSchema,
  defaultConcurrency: Number.POSITIVE_INFINITY,
  adaptive: false,
  async create(_name, config, context) {
    // Loaded on first use, so parsing a config or starting the CLI never loads the engine.
    const { LlamaCppModel } = await import("./llama-cpp-model.js");
    return LlamaCppModel.load({
      model: config.model,
      ...(config.lora && config.lora.length > 0 ? { adapters: config.lora } : {}),
      baseDir: context.baseDir,
      contextSize: config.contextSize,
      sequences: config.sequences,
      gpu: config.gpu,
      flashAttention: config.flashAttention,
      chatTemplate: config.chatTemplate,
      generation: config.generation,
      prefixReuse: config.prefixReuseMinTokens === 0 ? false : { minTokens: config.prefixReuseMinTokens },
      defaults: generationDefaults(config),
      downloadTimeouts: { connectTimeoutMs: config.downloadConnectTimeoutMs, idleTimeoutMs: config.downloadIdleTimeoutMs },
      ...(config.batchSize !== undefined ? { batchSize: config.batchSize } : {}),
      ...(config.threads !== undefined ? { threads: config.threads } : {}),
      ...(context.maxThreads !== undefined ? { maxThreads: context.maxThreads } : {}),
      ...(context.onDownloadProgress ? { onDownloadProgress: context.onDownloadProgress } : {}),
    });
  },
  // The engine cuts concurrent calls into fixed decode groups itself; a limit in front of it would feed a batch
  // in dribs instead of as one wave, which changes the groups (and so the numerics) with timing.
  endpoint: (name, config) => (config.concurrency === undefined ? undefined : `llama-cpp:${name}`),
  async preflight(_name, config, baseDir) {
    for (const [i, adapter] of (config.lora ?? []).entries()) {
      try {
        checkGgufFile(path.resolve(baseDir, adapter));
      } catch (err) {
        throw new IterAlignError("MODEL_NOT_FOUND", `lora[${i}]: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    if (isRemote(config.model)) return;
    const { resolveModelPath } = await import("./engine.js");
    checkGgufFile(await resolveModelPath(config.model, { baseDir }));
  },
  async modelRef(config, baseDir): Promise<ModelRef> {
    const adapters = (config.lora ?? []).map((a) => path.resolve(baseDir, a));
    const withAdapters = adapters.length > 0 ? { adapters } : {};
    if (!isRemote(config.model) && !isHfModelFolder(path.resolve(baseDir, config.model))) return { provider: "llama-cpp", model: path.resolve(baseDir, config.model), ...withAdapters };
    const { resolveModelPath } = await import("./engine.js");
    return { provider: "llama-cpp", model: await resolveModelPath(config.model, { baseDir }), ...withAdapters };
  },
  resolveTrainedModel(model, baseDir, what) {
    const file = path.resolve(baseDir, model);
    let isFile: boolean;
    try {
      isFile = statSync(file).isFile();
    } catch {
      throw new IterAlignError("TRAINING_FAILED", `${what}: ${file} does not exist`, { details: { model: file } });
    }
    if (!isFile) {
      throw new IterAlignError(
        "TRAINING_FAILED",
        `${what}: ${file} is a directory; the llama-cpp provider loads a .gguf file (convert the checkpoint, or name a provider that serves it)`,
        { details: { model: file } },
      );
    }
    return { provider: "llama-cpp", model: file };
  },
  stillExists: (ref) => existsSync(ref.model) && (ref.adapters ?? []).every((a) => existsSync(a)),
  withTrainedModel(config, ref) {
    if (ref.provider !== "llama-cpp") {
      throw new IterAlignError("TRAINING_FAILED", `the trained model is a ${ref.provider} model (${ref.model}); a llama-cpp target needs a GGUF file`);
    }
    const { lora: _lora, ...rest } = config;
    return { ...rest, model: ref.model, ...(ref.adapters && ref.adapters.length > 0 ? { lora: [...ref.adapters] } : {}) };
  },
};
