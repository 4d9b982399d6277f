/**
 * `iteralign/testing`: parts for testing code built on iteralign without real model weights.
 * - {@link ScriptedModel}: a LanguageModel double that answers from a script and records every call.
 * - {@link writeRandomModel} / {@link ensureFixtureModels}: real GGUF files with random weights and a real
 *   tokenizer and chat template, small enough to run the real engine in a test.
 * - Protocol servers for the Anthropic Messages and OpenAI Batch APIs, a fault-injecting HTTP proxy, and a
 *   llama-server launcher (needs `iteralign setup`).
 *
 * @packageDocumentation
 */
export {
  ScriptedModel,
  deferred,
  textResult,
  untilAborted,
  type Deferred,
  type EmbedCall,
  type ScriptedCall,
  type ScriptedKind,
  type ScriptedModelOptions,
  type Step,
} from "./scripted-model.js";
export { countParameters, writeRandomModel, type RandomModelSpec } from "../gguf/random-model.js";
export { ensureFixtureModels, fixtureModelPath, FIXTURE_MODELS, type FixtureModelName } from "../gguf/fixture-models.js";
export { startAnthropicProtocolServer, upstreamAnswers, type AnthropicProtocolServer, type AnthropicProtocolServerOptions } from "./anthropic-protocol-server.js";
export { startOpenAIBatchServer, type OpenAIBatchServer, type OpenAIBatchServerOptions } from "./openai-batch-protocol-server.js";
export { FAULT_KINDS, startFaultProxy, type FaultKind, type FaultProxy, type FaultProxyOptions, type FaultWeights } from "./fault-proxy.js";
export { startLlamaServer, type LlamaServerOptions, type RunningLlamaServer } from "./llama-server.js";
