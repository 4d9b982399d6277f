/**
 * iteralign's public API. Every name here is supported; anything reached by a deep import is internal and may
 * change without notice.
 *
 * Subpaths:
 * - `iteralign` (this file): configuration, the loop, evaluation, benchmarks, trainers, providers, middleware,
 *   the run store and the records they exchange. Importing it does not load the llama.cpp engine.
 * - `iteralign/llama-cpp`: the embedded engine (loads node-llama-cpp): the llama-cpp model, model-file
 *   resolution, the native tool build.
 * - `iteralign/stages`: the loop's stages as pure functions and the prompts they send.
 * - `iteralign/datasets`, `iteralign/constitutions`: red-team data readers and the constitution pool.
 * - `iteralign/testing`: a scripted model, generated GGUF models and protocol test servers, for your tests.
 *
 * @packageDocumentation
 */

// --- Contracts ---------------------------------------------------------------------------------------------------
export { IterAlignError, OutputInvalidError, isIterAlignError, USER_INPUT_ERROR_CODES, type ErrorCode } from "./spec/errors.js";
export {
  CapabilityMissingError,
  ChatMessageSchema,
  GenerationParamsSchema,
  requireCapability,
  ROLES,
  type Capability,
  type ChatMessage,
  type ContinuationScore,
  type EmbedResult,
  type FinishReason,
  type GenerateObjectRequest,
  type GenerateObjectResult,
  type GenerateRequest,
  type GenerateResult,
  type GenerationParams,
  type JsonSchema,
  type LanguageModel,
  type Role,
  type ScoreRequest,
  type ScoreResult,
  type TokenUsage,
} from "./spec/language-model.js";
export type { Benchmark, BenchmarkModels, BenchmarkResult, BenchmarkRunOptions, BosConvention, ItemResult, Metric, ScoringMode } from "./spec/benchmark.js";
export type { ModelRef, Trainer, TrainerState, TrainFiles, TrainInput, TrainProgress, TrainResult } from "./spec/trainer.js";
export type { StageErrorItem, StageItem, StageItemError } from "./spec/stage-item.js";
export {
  AttemptSchema,
  GateDecisionSchema,
  JudgeOutputSchema,
  PrincipleSchema,
  RevisionSchema,
  TrainingExampleSchema,
  VerdictSchema,
  type Attempt,
  type GateDecision,
  type HarmDimension,
  type JudgeOutput,
  type Principle,
  type Revision,
  type Severity,
  type TrainingExample,
  type Verdict,
} from "./spec/records.js";
export { ARTIFACT_VERSION, IterationMetricsSchema, MetricsFileSchema, SummaryFileSchema, type IterationMetrics, type SummaryFile } from "./spec/artifacts.js";
export type { BatchJob, BatchJobLog, CallKind, CallLog, CallRecord } from "./spec/call-log.js";

// --- Configuration -----------------------------------------------------------------------------------------------
export { ConfigError, loadConfig, parseConfig, type LoadedConfig } from "./config/load-config.js";
export { ConfigSchema, type IterAlignConfig, type IterAlignConfigInput, type ModelConfig } from "./config/config-schema.js";
export { STARTER_CONFIG } from "./config/starter-config.js";

// --- The loop ----------------------------------------------------------------------------------------------------
export { newRunId, runLoop, type LoopModelSource, type RunLoopOptions, type RunSummary } from "./pipeline/run-loop.js";
export type { Clock, LoopEvent } from "./pipeline/run-context.js";
export { stopReason, type StopRules, type StopState } from "./pipeline/stop-rules.js";

// --- Evaluation --------------------------------------------------------------------------------------------------
export { checkEvaluation, runEvaluation, type EvalProgress, type RunEvaluationOptions } from "./eval/runner.js";
export { BENCHMARK_NAMES, createBenchmarks, parseBenchList, type BenchmarkName, type BenchmarkSources, type BenchSpec } from "./eval/registry.js";
export { truthfulqaBenchmark, type TruthfulqaOptions } from "./eval/truthfulqa.js";
export { hhhBenchmark, type HhhOptions } from "./eval/hhh.js";
export { asrBenchmark, type AsrBenchmarkOptions } from "./eval/asr.js";
export { xstestBenchmark, type XstestBenchmarkOptions } from "./eval/xstest.js";
export { multipleChoiceJsonlBenchmark, type CustomMcOptions } from "./eval/custom-mc.js";
export { compareEntries, metricsTable, readEvalSummary, writeEvalReport, type EvalReport, type EvalReportFiles, type EvalSummaryEntry } from "./eval/report.js";
export { wilsonInterval } from "./eval/stats.js";
export { gradedAsrBenchmark, type GradedAsrOptions } from "./eval/graded-asr.js";
export {
  binaryMetrics,
  calibrateJudge,
  calibrateRequestJudge,
  CALIBRATION_PRESETS,
  type BinaryMetrics,
  type CalibrateOptions,
  type CalibrationItem,
  type CalibrationPreset,
  type CalibrationReport,
} from "./eval/judge-calibration.js";

// --- Training ----------------------------------------------------------------------------------------------------
export { createTrainer } from "./pipeline/training.js";
export { InContextTrainer, constitutionSystemPrompt } from "./train/in-context-trainer.js";
export { LlamaCppTrainer } from "./train/llama-cpp-trainer.js";
export { LlamaCppTrainerOptionsSchema, type LlamaCppTrainerOptions, type LlamaCppTrainerOptionsInput } from "./train/llama-cpp-trainer-options.js";
export { OpenAITrainer, OpenAITrainerOptionsSchema, type OpenAITrainerOptions } from "./train/openai-trainer.js";
export { CommandTrainer, CommandTrainerOptionsSchema, type CommandTrainerOptions } from "./train/command-trainer.js";

// --- Providers and middleware ------------------------------------------------------------------------------------
export { ModelSet, createProviderModel, modelNameForRole, preflightModels, withSystemPrompt, type CreateModelOptions, type ModelSetOptions, type ModelsConfig } from "./providers/registry.js";
export { PROVIDERS, PROVIDER_IDS, ModelConfigSchema, providerOf } from "./providers/builtin.js";
export type { ModelConfigBase, ProviderContext, ProviderDefinition, RateLimitObserver } from "./providers/provider.js";
export { OpenAICompatibleModel, type OpenAICompatibleModelOptions } from "./providers/openai-compatible/openai-compatible-model.js";
export { AnthropicModel, type AnthropicModelOptions } from "./providers/anthropic/anthropic-model.js";
export { BUILTIN_PRICES, callCost, loadPriceFile, priceFor, type PriceTable } from "./providers/pricing.js";
export { applyMiddleware, type MiddlewareOptions } from "./providers/middleware/compose.js";
export { withCache, type CacheOptions } from "./providers/middleware/cache.js";
export { withRetry, type RetryOptions } from "./providers/middleware/retry.js";
export { withTimeout, type TimeoutOptions } from "./providers/middleware/timeout.js";
export { createLimiter, withConcurrencyLimit, type Limiter } from "./providers/middleware/concurrency.js";
export { AdaptiveLimiter, type AdaptiveLimitOptions } from "./providers/middleware/rate-limit.js";
export { createMeter, withAccounting, type Meter, type MeterSnapshot } from "./providers/middleware/accounting.js";
export { withPricing, type PricingOptions } from "./providers/middleware/pricing.js";
export { wrapModel, type MethodOverrides } from "./providers/middleware/wrap.js";

// --- The run store -----------------------------------------------------------------------------------------------
export type { RecordQuery, RecordRow, RunRow, RunStatus, RunStore, StoredRecord } from "./store/run-store.js";
export { SqliteRunStore } from "./store/sqlite-run-store.js";
export { MemoryRunStore } from "./store/memory-run-store.js";

// --- Utilities ---------------------------------------------------------------------------------------------------
export { canonicalJson, sha256Hex, stableJson } from "./util/canonical-json.js";
