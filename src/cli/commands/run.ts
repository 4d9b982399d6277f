import { setMaxListeners } from "node:events";
import path from "node:path";
import { loadConfig } from "../../config/load-config.js";
import { newRunId, runLoop } from "../../pipeline/run-loop.js";
import type { LoopEvent } from "../../pipeline/run-context.js";
import { createMeter } from "../../providers/middleware/accounting.js";
import { IterAlignError } from "../../spec/errors.js";
import { onInterrupt } from "../interrupt.js";
import type { CommandIo } from "../io.js";
import type { Progress } from "../progress.js";
import { Reporter, type ReporterOptions } from "../reporter.js";

/**
 * `iteralign run`: the IterAlign loop. Ctrl-C stops cleanly after the current model calls and prints how to
 * resume; `--resume <id>` continues a run (its stored config is used) without repeating finished calls.
 */
export async function runCommand(
  options: { config: string; resume?: string; runId?: string; costBudget?: number } & ReporterOptions,
  io: CommandIo,
): Promise<number> {
  const loaded = loadConfig(options.config);
  const storePath = path.resolve(loaded.baseDir, loaded.config.store.path);
  const abort = new AbortController();
  // Every call in flight listens to this one signal (hundreds at once): not a leak.
  setMaxListeners(0, abort.signal);
  const interrupt = onInterrupt(() => {
    io.err("\nstopping after the calls in flight (Ctrl-C again to force)...\n");
    abort.abort(new IterAlignError("ABORTED", "interrupted by the user"));
  });
  const meter = createMeter();
  const report = new Reporter(io, options);
  let bar: Progress | undefined;
  let barStage: string | undefined;
  const stageStarted = new Map<string, number>();
  const onEvent = (event: LoopEvent): void => {
    const tps = meter.snapshot().totals.tokensPerSecond;
    if (event.type === "iteration-start") {
      report.info(`iteration ${event.iteration}: ${event.batch} prompts (${event.remaining} left in the train split)`);
    } else if (event.type === "stage-start") {
      bar?.stop();
      bar = undefined;
      barStage = undefined;
      stageStarted.set(event.stage, performance.now());
      report.detail(`  ${event.stage}: started${event.items > 0 ? `, ${event.items} items` : ""}`);
      if (event.items > 0) {
        // One bar per stage, counting its items (calls settle in any order; the bar shows how many are done).
        bar = report.progress(`  ${event.stage.padEnd(12)}`, event.items);
        barStage = event.stage;
      }
    } else if (event.type === "stage-progress") {
      // The evaluation reports per benchmark (`eval truthfulqa`): each gets its own bar.
      if (barStage !== event.stage) {
        bar?.stop();
        bar = report.progress(`  ${event.stage.padEnd(12)}`, event.items);
        barStage = event.stage;
      }
      bar?.update(event.done, tps, `${event.done}/${event.items} items`);
    } else if (event.type === "stage-end") {
      bar?.stop();
      bar = undefined;
      barStage = undefined;
      const tokens = event.promptTokens + event.completionTokens;
      report.info(
        `  ${event.stage}: ${event.items} items${event.errors ? `, ${event.errors} errors` : ""}${
          event.resumed
            ? " (from the store)"
            : `${event.retried ? ` (${event.retried} failed items retried)` : ""} in ${event.seconds.toFixed(1)} s, ${tokens} tokens`
        }${event.costUsd ? `, $${event.costUsd.toFixed(4)}` : ""}`,
      );
      if (!event.resumed && event.seconds > 0 && tokens > 0) {
        report.detail(`  ${event.stage}: ${(tokens / event.seconds).toFixed(1)} tok/s (${event.promptTokens} prompt, ${event.completionTokens} completion)`);
      }
    } else if (event.type === "iteration-end") {
      bar?.stop();
      bar = undefined;
      barStage = undefined;
    } else {
      report.info(`stopped: ${event.reason}`);
      // Always shown, quiet or not: a run that ended with errors must say so.
      report.warn(formatStageErrors(event.errorsByStage));
    }
  };
  const runId = options.resume ?? options.runId ?? newRunId();
  try {
    const summary = await runLoop({
      ...(options.resume ? { resume: { runId: options.resume, storePath } } : { loaded }),
      runId,
      signal: abort.signal,
      onEvent,
      meter,
      notify: (message) => report.info(`  ${message}`),
      ...(options.costBudget !== undefined ? { overrides: { costBudget: options.costBudget } } : {}),
    });
    bar?.stop();
    io.out(
      `run ${summary.runId}: ${summary.iterations.length} iterations, ${summary.activePrinciples} active principles${
        summary.costUsd > 0 ? `, $${summary.costUsd.toFixed(4)} at the models' prices` : ""
      }\n`,
    );
    io.out(`outputs: ${summary.dir}\n`);
    if (summary.untrainedExamples > 0) {
      report.warn(
        `warning: ${summary.untrainedExamples} gated examples were never trained on: fewer than the ${summary.minTrainingExamples ?? 1} one training needs were left when the run stopped (they are in the iterations' export files)`,
      );
    }
    return 0;
  } catch (err) {
    bar?.stop();
    if (abort.signal.aborted) {
      report.warn(`interrupted; resume with: iteralign run --config ${options.config} --resume ${runId}`);
      return 1;
    }
    if (err instanceof IterAlignError && err.code === "BUDGET_EXCEEDED") {
      report.warn(`stopped: ${err.message}`);
      report.warn(`resume with a larger budget: iteralign run --config ${options.config} --resume ${runId} --cost-budget <dollars>`);
      return 1;
    }
    if (err instanceof IterAlignError && (err.code === "STAGE_FAILED" || err.code === "ERROR_RATE_EXCEEDED")) {
      report.warn(`error [${err.code}]: ${err.message}`);
      report.warn(`the failed items are kept as error rows; once the cause is fixed, retry them with: iteralign run --config ${options.config} --resume ${runId}`);
      return 1;
    }
    throw err;
  } finally {
    interrupt.dispose();
  }
}

/** The end-of-run line on errors, always printed: how many items of each stage ended in errors. */
export function formatStageErrors(errorsByStage: Readonly<Record<string, number>>): string {
  const entries = Object.entries(errorsByStage);
  const total = entries.reduce((n, [, e]) => n + e, 0);
  if (entries.length === 0) return "errors: none (no stage ran)";
  return `errors: ${total} item${total === 1 ? "" : "s"} (${entries.map(([stage, n]) => `${stage} ${n}`).join(", ")})`;
}
