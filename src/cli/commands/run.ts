import path from "node:path";
import { loadConfig } from "../../config/load-config.js";
import { newRunId, runLoop } from "../../pipeline/run-loop.js";
import type { LoopEvent } from "../../pipeline/run-context.js";
import { createMeter } from "../../providers/middleware/accounting.js";
import { IterAlignError } from "../../spec/errors.js";
import type { CommandIo } from "../io.js";
import { createProgress, type Progress } from "../progress.js";

/**
 * `iteralign run`: the IterAlign loop. Ctrl-C stops cleanly after the current model calls and prints how to
 * resume; `--resume <id>` continues a run (its stored config is used) without repeating finished calls.
 */
export async function runCommand(
  options: { config: string; resume?: string; runId?: string; costBudget?: number },
  io: CommandIo,
): Promise<number> {
  const loaded = loadConfig(options.config);
  const storePath = path.resolve(loaded.baseDir, loaded.config.store.path);
  const abort = new AbortController();
  const onSigint = (): void => {
    io.err("\nstopping after the calls in flight (Ctrl-C again to force)...\n");
    abort.abort(new IterAlignError("ABORTED", "interrupted by the user"));
    process.off("SIGINT", onSigint);
  };
  process.on("SIGINT", onSigint);
  const meter = createMeter();
  let bar: Progress | undefined;
  const onEvent = (event: LoopEvent): void => {
    const tps = meter.snapshot().totals.tokensPerSecond;
    if (event.type === "iteration-start") {
      io.err(`iteration ${event.iteration}: ${event.batch} prompts (${event.remaining} left in the train split)\n`);
    } else if (event.type === "stage-start") {
      bar?.stop();
      // One bar per stage, counting its items (calls settle in any order; the bar shows how many are done).
      bar = createProgress(`  ${event.stage.padEnd(12)}`, event.items);
    } else if (event.type === "stage-progress") {
      bar?.update(event.done, tps, `${event.done}/${event.items} items`);
    } else if (event.type === "stage-end") {
      bar?.stop();
      bar = undefined;
      io.err(
        `  ${event.stage}: ${event.items} items${event.errors ? `, ${event.errors} errors` : ""}${
          event.resumed
            ? " (from the store)"
            : `${event.retried ? ` (${event.retried} failed items retried)` : ""} in ${event.seconds.toFixed(1)} s, ${event.promptTokens + event.completionTokens} tokens`
        }${event.costUsd ? `, $${event.costUsd.toFixed(4)}` : ""}\n`,
      );
    } else if (event.type === "iteration-end") {
      bar?.stop();
      bar = undefined;
    } else {
      io.err(`stopped: ${event.reason}\n`);
      io.err(`${formatStageErrors(event.errorsByStage)}\n`);
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
      notify: (message) => io.err(`  ${message}\n`),
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
      io.err(
        `warning: ${summary.untrainedExamples} gated examples were never trained on: fewer than the ${summary.minTrainingExamples ?? 1} one training needs were left when the run stopped (they are in the iterations' export files)\n`,
      );
    }
    return 0;
  } catch (err) {
    bar?.stop();
    if (abort.signal.aborted) {
      io.err(`interrupted; resume with: iteralign run --config ${options.config} --resume ${runId}\n`);
      return 1;
    }
    if (err instanceof IterAlignError && err.code === "BUDGET_EXCEEDED") {
      io.err(`stopped: ${err.message}\n`);
      io.err(`resume with a larger budget: iteralign run --config ${options.config} --resume ${runId} --cost-budget <dollars>\n`);
      return 1;
    }
    if (err instanceof IterAlignError && (err.code === "STAGE_FAILED" || err.code === "ERROR_RATE_EXCEEDED")) {
      io.err(`error [${err.code}]: ${err.message}\n`);
      io.err(`the failed items are kept as error rows; once the cause is fixed, retry them with: iteralign run --config ${options.config} --resume ${runId}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** The end-of-run line on errors, always printed: how many items of each stage ended in errors. */
export function formatStageErrors(errorsByStage: Readonly<Record<string, number>>): string {
  const entries = Object.entries(errorsByStage);
  const total = entries.reduce((n, [, e]) => n + e, 0);
  if (entries.length === 0) return "errors: none (no stage ran)";
  return `errors: ${total} item${total === 1 ? "" : "s"} (${entries.map(([stage, n]) => `${stage} ${n}`).join(", ")})`;
}
