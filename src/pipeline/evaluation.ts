import path from "node:path";
import { z } from "zod";
import type { IterAlignConfig } from "../config/config-schema.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { createBenchmarks, evalAnswerParams } from "../eval/registry.js";
import { appendEvalSummary, evalSummaryEntry, writeEvalReport, type EvalReport } from "../eval/report.js";
import { checkEvaluation, runEvaluation } from "../eval/runner.js";
import type { LanguageModel } from "../spec/language-model.js";
import type { StageCheckpoint } from "./checkpoint.js";
import type { RunLayout } from "./run-layout.js";

/** Whether the run evaluates at this point: `iteration` null is before the first iteration. */
export function evaluatesAt(config: IterAlignConfig, iteration: number | null, trained: boolean): boolean {
  if (config.eval.benchmarks.trim() === "") return false;
  if (iteration === null) return true;
  if (config.eval.when === "every-iteration") return true;
  return config.eval.when === "base-and-trained" && trained;
}

const ReportValueSchema = z.object({ report: z.unknown() });

/**
 * Evaluates the target with the config's benchmarks (or loads the stored report after a resume), writes
 * `eval/<label>/eval.json|csv` and adds the metrics to `eval/summary.json`, which `iteralign compare` reads.
 * Iteration null evaluates the base model (stored with iteration 0 under its own name).
 */
export async function evaluateTarget(input: {
  config: IterAlignConfig;
  baseDir: string;
  checkpoint: StageCheckpoint;
  layout: RunLayout;
  iteration: number | null;
  trainer: string;
  models: { model: LanguageModel; judge: LanguageModel };
  heldout: readonly RedTeamPrompt[];
  signal: AbortSignal;
  onProgress?: (benchmark: string, done: number, total: number) => void;
}): Promise<EvalReport> {
  const { config, checkpoint, iteration } = input;
  const label = iteration === null ? "base" : `iter-${String(iteration).padStart(3, "0")}`;
  const key = `eval:${label}`;
  let report = checkpoint.loadValue(iteration ?? 0, key, ReportValueSchema)?.report as EvalReport | undefined;
  if (!report) {
    const benchmarks = await createBenchmarks(config.eval.benchmarks, {
      baseDir: input.baseDir,
      ...(config.eval.hhhFile ? { hhhFile: config.eval.hhhFile } : {}),
      ...(config.eval.bigbenchDir ? { bigbenchDir: config.eval.bigbenchDir } : {}),
      heldoutPrompts: () => input.heldout,
      answerParams: evalAnswerParams(config.loop.redTeam),
    });
    const models = { model: input.models.model, judge: input.models.judge };
    checkEvaluation({ benchmarks, models, mode: config.eval.mode });
    report = await runEvaluation({
      benchmarks,
      models,
      mode: config.eval.mode,
      bos: config.eval.bos,
      ...(config.eval.limit !== undefined ? { limit: config.eval.limit } : {}),
      signal: input.signal,
      ...(input.onProgress ? { onProgress: (p: { benchmark: string; done: number; total: number }) => input.onProgress?.(p.benchmark, p.done, p.total) } : {}),
    });
    checkpoint.saveValue(iteration ?? 0, key, { report });
  }
  writeEvalReport(report, path.join(input.layout.dir, "eval", label));
  // The base model was not trained by anyone: its row carries no trainer.
  appendEvalSummary(input.layout.dir, evalSummaryEntry(report, { iteration, label, ...(iteration === null ? {} : { trainer: input.trainer }) }));
  return report;
}
