/**
 * iteralign's public API: the model layer, providers, middleware, run store and configuration.
 * Re-exports only; see each module for details.
 */
export * from "./spec/errors.js";
export * from "./spec/language-model.js";
export * from "./spec/call-log.js";

export { LlamaCppModel, type LlamaCppModelOptions } from "./providers/llama-cpp/llama-cpp-model.js";
export { fingerprintFile, isRemoteModelRef, modelsDir, resolveModelPath, type EngineOptions } from "./providers/llama-cpp/engine.js";
export { OpenAICompatibleModel, type OpenAICompatibleModelOptions } from "./providers/openai-compatible/openai-compatible-model.js";
export { ModelSet, createProviderModel, modelNameForRole, type ModelSetOptions } from "./providers/registry.js";

export { applyMiddleware, type MiddlewareOptions } from "./providers/middleware/compose.js";
export { withCache, type CacheOptions } from "./providers/middleware/cache.js";
export { withRetry, type RetryOptions } from "./providers/middleware/retry.js";
export { withTimeout, type TimeoutOptions } from "./providers/middleware/timeout.js";
export { createLimiter, withConcurrencyLimit, type Limiter } from "./providers/middleware/concurrency.js";
export { createMeter, withAccounting, type Meter, type MeterSnapshot } from "./providers/middleware/accounting.js";
export { canonicalJson, sha256Hex } from "./util/canonical-json.js";

export * from "./store/run-store.js";
export { SqliteRunStore } from "./store/sqlite-run-store.js";
export { MemoryRunStore } from "./store/memory-run-store.js";

export * from "./config/config-schema.js";
export { ConfigError, loadConfig, parseConfig, type LoadedConfig } from "./config/load-config.js";
export { STARTER_CONFIG } from "./config/starter-config.js";

export { ensureLlamaBuild, findLlamaBuild, type LlamaBuild, type LlamaGpu, type LlamaTool } from "./native/llama-build.js";
export { defaultCacheDir } from "./native/llama-bundle.js";
export { writeRandomModel, type RandomModelSpec } from "./gguf/random-model.js";
export * from "./datasets/index.js";
export * from "./constitutions/index.js";
export * from "./stages/index.js";
export * from "./prompts/index.js";
export * from "./spec/records.js";
