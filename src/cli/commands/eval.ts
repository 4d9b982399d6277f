import { setMaxListeners } from "node:events";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { LlamaCppModelConfigSchema, type IterAlignConfig, type ModelConfig } from "../../config/config-schema.js";
import type { BenchmarkResult } from "../../spec/benchmark.js";
import { createBenchmarks, evalAnswerParams, parseBenchList } from "../../eval/registry.js";
import { metricsTable, writeEvalReport } from "../../eval/report.js";
import { runEvaluation, type EvalProgress } from "../../eval/runner.js";
import { loadLoopPrompts } from "../../pipeline/prompt-source.js";
import { ModelSet, modelNameForRole } from "../../providers/registry.js";
import { IterAlignError } from "../../spec/errors.js";
import type { BosConvention } from "../../spec/benchmark.js";
import { ROLES, type Role } from "../../spec/language-model.js";
import { onInterrupt } from "../interrupt.js";
import type { CommandIo } from "../io.js";
import { configOrModel } from "../config-or-model.js";
import type { Progress } from "../progress.js";
import { Reporter } from "../reporter.js";

/** Options of `iteralign eval`, as commander parses them. */
export interface EvalCommandOptions {
  readonly config: string;
  /** A role, the name of a `models` entry, or a GGUF path / `hf:` URI. */
  readonly model: string;
  readonly bench: string;
  readonly mode?: string;
  readonly limit?: number;
  readonly bos?: string;
  readonly out?: string;
  readonly hhhFile?: string;
  readonly bigbenchDir?: string;
  readonly quiet?: boolean;
  readonly verbose?: boolean;
  readonly logFile?: string;
}

/** Conventions `--bos` accepts. */
export const BOS_CONVENTIONS = ["model", "none"] as const;

/** Scoring modes `--mode` accepts. */
export const EVAL_MODES = ["loglik", "generative"] as const;

/** Name given to the config entry made for a `--model <gguf path>` (suffixed if the config already uses it). */
const PATH_MODEL_NAME = "eval-model";

/** Which config entry `--model` means, in a config that has an entry for it (added for a GGUF path). */
export interface ResolvedEvalModel {
  readonly config: IterAlignConfig;
  readonly name: string;
  /** The role `--model` named, when it named one. */
  readonly role?: Role;
  /** How the model was chosen, for messages. */
  readonly via: "role" | "entry" | "path";
}

/**
 * Resolves `--model`: a role bound in the config, then the name of a `models` entry, then a GGUF file (a path
 * relative to the working directory, or an `hf:` URI). A file gets a llama-cpp entry with the target's engine
 * settings (when the target is a llama-cpp model; llama-cpp defaults otherwise) and that file as its model.
 */
export function resolveEvalModel(config: IterAlignConfig, value: string, cwd: string = process.cwd()): ResolvedEvalModel {
  if ((ROLES as readonly string[]).includes(value)) {
    const role = value as Role;
    const name = modelNameForRole(config, role);
    if (!name) throw new IterAlignError("USAGE", `--model ${value}: no model is bound to the ${role} role in the config`);
    return { config, name, role, via: "role" };
  }
  if (value in config.models) return { config, name: value, via: "entry" };
  const isUri = value.startsWith("hf:");
  const file = isUri ? value : path.resolve(cwd, value);
  const looksLikeFile = isUri || value.toLowerCase().endsWith(".gguf") || (existsSync(file) && statSync(file).isFile());
  if (!looksLikeFile) {
    throw new IterAlignError(
      "USAGE",
      `--model ${value}: not a role (${ROLES.join(", ")}), a model of the config (${Object.keys(config.models).join(", ")}), or a GGUF file`,
    );
  }
  const target = config.models[config.roles.target];
  const entry: ModelConfig =
    target?.provider === "llama-cpp" ? { ...target, model: file } : LlamaCppModelConfigSchema.parse({ provider: "llama-cpp", model: file });
  let name = PATH_MODEL_NAME;
  for (let i = 2; name in config.models; i++) name = `${PATH_MODEL_NAME}-${i}`;
  return { config: { ...config, models: { ...config.models, [name]: entry } }, name, via: "path" };
}

function defaultOutDir(runsDir: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return path.join(runsDir, `eval-${stamp}`);
}

/**
 * `iteralign eval`: runs benchmarks on one model, prints the metrics table (every row with its mode and 95%
 * interval) and writes `eval.json`, `eval.csv` and `metrics.csv`. Capabilities are checked before any model call.
 */
export async function evalCommand(options: EvalCommandOptions, io: CommandIo): Promise<number> {
  const mode = options.mode ?? "loglik";
  if (!(EVAL_MODES as readonly string[]).includes(mode)) {
    throw new IterAlignError("USAGE", `--mode must be one of ${EVAL_MODES.join(", ")}, got '${mode}'`);
  }
  if (options.bos !== undefined && !(BOS_CONVENTIONS as readonly string[]).includes(options.bos)) {
    throw new IterAlignError("USAGE", `--bos must be one of ${BOS_CONVENTIONS.join(", ")}, got '${options.bos}'`);
  }
  const specs = parseBenchList(options.bench);
  const loaded = configOrModel(options.config, options.model);
  const resolved = resolveEvalModel(loaded.config, options.model);
  const { config } = resolved;
  const bos = (options.bos as BosConvention | undefined) ?? config.eval.bos;
  const benchmarks = await createBenchmarks(specs, {
    ...(options.hhhFile !== undefined ? { hhhFile: options.hhhFile } : {}),
    ...(options.bigbenchDir !== undefined ? { bigbenchDir: options.bigbenchDir } : {}),
    heldoutPrompts: async () => (await loadLoopPrompts(config.data, loaded.baseDir)).heldout,
    answerParams: evalAnswerParams(config.loop.redTeam),
  });
  const outDir = options.out !== undefined ? path.resolve(options.out) : defaultOutDir(path.resolve(loaded.baseDir, config.runsDir));

  const models = new ModelSet({
    config,
    baseDir: loaded.baseDir,
    ...(config.engine.maxThreads !== undefined ? { maxThreads: config.engine.maxThreads } : {}),
  });
  const abort = new AbortController();
  // Every call in flight listens to this one signal (hundreds at once): not a leak.
  setMaxListeners(0, abort.signal);
  const interrupt = onInterrupt(() => {
    io.err("\nstopping after the calls in flight (Ctrl-C again to force)...\n");
    abort.abort(new IterAlignError("ABORTED", "interrupted by the user"));
  });
  const reporter = new Reporter(io, options);
  let bar: Progress | undefined;
  let barIndex = -1;
  try {
    const model = resolved.role ? await models.forRole(resolved.role) : await models.byName(resolved.name);
    const judge = benchmarks.some((b) => b.needsJudge) ? await models.forRole("judge") : undefined;
    reporter.detail(
      `evaluating ${model.modelId}${judge ? ` (judge: ${judge.modelId})` : ""} on ${benchmarks.map((b) => b.name).join(", ")}, ${mode} mode, bos ${bos}${options.limit !== undefined ? `, first ${options.limit} items each` : ""}`,
    );
    const started = performance.now();
    const onProgress = (p: EvalProgress): void => {
      if (p.index !== barIndex) {
        bar?.stop();
        bar = reporter.progress(`${p.benchmark} (${p.index + 1}/${p.count})`, p.total);
        barIndex = p.index;
      }
      bar?.update(p.done, models.meter.snapshot().totals.tokensPerSecond);
    };
    let last = started;
    const onResult = (result: BenchmarkResult): void => {
      bar?.stop();
      bar = undefined;
      const now = performance.now();
      reporter.info(`${result.benchmark}: ${result.items.length} items in ${((now - last) / 1000).toFixed(1)} s${errorNote(result)}`);
      last = now;
    };
    const report = await runEvaluation({
      benchmarks,
      models: { model, ...(judge ? { judge } : {}) },
      mode: mode as (typeof EVAL_MODES)[number],
      bos,
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
      signal: abort.signal,
      onProgress,
      onResult,
    });
    const files = writeEvalReport(report, outDir);
    io.out(`model: ${resolved.name} (${report.model})${report.judge ? `, judge: ${report.judge}` : ""}\n`);
    io.out(metricsTable(report.results));
    io.out(`report: ${files.json}\nitems: ${files.csv}\nmetrics: ${files.metrics}\n`);
    return 0;
  } catch (err) {
    bar?.stop();
    if (abort.signal.aborted) {
      reporter.warn("interrupted; nothing was written");
      return 1;
    }
    throw err;
  } finally {
    interrupt.dispose();
    await models.close();
  }
}

/** Counts the items that ended as error rows (a failed call, or a judge answer that stayed invalid). */
function errorNote(result: BenchmarkResult): string {
  const errors = result.items.filter((item) => item.details.error !== undefined && item.details.error !== null).length;
  return errors === 0 ? "" : `, ${errors} error rows (see eval.csv)`;
}
