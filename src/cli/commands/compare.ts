import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { loadConfig } from "../../config/load-config.js";
import { compareEntries, comparisonTable, evalSummaryPath, readEvalSummary } from "../../eval/report.js";
import { IterAlignError } from "../../spec/errors.js";
import type { CommandIo } from "../io.js";

/** Options of `iteralign compare`. */
export interface CompareCommandOptions {
  /** A run id (looked up under the config's runsDir) or a run directory. */
  readonly run: string;
  readonly config: string;
  readonly json?: boolean;
}

/** A run directory given as is, or `<runsDir>/<id>` of the config. */
export function resolveRunDir(run: string, config: string): string {
  if (existsSync(run) && statSync(run).isDirectory()) return path.resolve(run);
  if (run.includes("/") || run.includes(path.sep)) throw new IterAlignError("USAGE", `${run}: no such run directory`);
  const loaded = loadConfig(config);
  const dir = path.resolve(loaded.baseDir, loaded.config.runsDir, run);
  if (!existsSync(dir)) throw new IterAlignError("USAGE", `run '${run}' not found (looked in ${dir})`);
  return dir;
}

/**
 * `iteralign compare`: the per-iteration evaluation table of a run from `eval/summary.json`: one row per
 * evaluated model (base, then each iteration), one column per benchmark metric with its mode, and each value's
 * change from the base model. `--json` prints the same as JSON, plus the entries with their per-category metrics.
 */
export async function compareCommand(options: CompareCommandOptions, io: CommandIo): Promise<number> {
  const runDir = resolveRunDir(options.run, options.config);
  const entries = readEvalSummary(runDir);
  if (entries.length === 0) {
    throw new IterAlignError("STORE_NOT_FOUND", `${evalSummaryPath(runDir)}: no evaluations recorded for this run`);
  }
  const comparison = compareEntries(entries);
  if (options.json) {
    io.out(`${JSON.stringify({ runDir, ...comparison, entries }, null, 2)}\n`);
    return 0;
  }
  io.out(`run: ${runDir}\n`);
  io.out(comparisonTable(comparison));
  const base = entries.some((e) => e.label === "base");
  io.out(base ? "(in parentheses: change from base)\n" : "(no base evaluation: no changes shown)\n");
  return 0;
}
