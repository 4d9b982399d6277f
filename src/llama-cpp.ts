/**
 * `iteralign/llama-cpp`: the embedded llama.cpp engine. Importing this loads node-llama-cpp.
 *
 * @packageDocumentation
 */
export { LlamaCppModel, type LlamaCppModelOptions } from "./providers/llama-cpp/llama-cpp-model.js";
export { fingerprintFile, isRemoteModelRef, modelsDir, resolveModelPath, type EngineOptions } from "./providers/llama-cpp/engine.js";
export { ensureLlamaBuild, findLlamaBuild, LLAMA_TOOLS, type LlamaBuild, type LlamaGpu, type LlamaTool } from "./native/llama-build.js";
export { defaultCacheDir } from "./native/llama-bundle.js";
export { checkGgufFile, type GgufCheck } from "./gguf/gguf-check.js";
