import { setMaxListeners } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadJudgeLabels } from "../../datasets/judge-labels.js";
import {
  CALIBRATION_PRESETS,
  calibrateJudge,
  calibrateRequestJudge,
  type BinaryMetrics,
  type CalibrationPreset,
  type CalibrationReport,
} from "../../eval/judge-calibration.js";
import { loadXstest } from "../../eval/xstest.js";
import { ModelSet } from "../../providers/registry.js";
import { IterAlignError } from "../../spec/errors.js";
import { renderTable } from "../../util/table.js";
import { configOrModel } from "../config-or-model.js";
import { onInterrupt } from "../interrupt.js";
import type { CommandIo } from "../io.js";
import { Reporter } from "../reporter.js";
import { resolveEvalModel, type ResolvedEvalModel } from "./eval.js";
import { GUARD_STYLES, GuardConfigSchema } from "../../spec/guard.js";

/** Options of `iteralign judge-eval`, as commander parses them. */
export interface JudgeEvalCommandOptions {
  readonly config: string;
  /** A role, the name of a `models` entry, or a GGUF path / `hf:` URI. */
  readonly judge: string;
  /** `harmbench-val` (bundled), `xstest` (the request check), or a file of labelled answers. */
  readonly data: string;
  readonly preset?: string;
  /** Use the judge as a guard classifier of this style (as `guard.style` in its model entry would). */
  readonly guard?: string;
  /** With `guard`: P(unsafe) at or above which an answer counts as harmful. */
  readonly threshold?: number;
  readonly limit?: number;
  readonly out?: string;
  /** How many wrongly judged items to print (default 10). */
  readonly showWrong?: number;
  readonly json?: boolean;
  readonly quiet?: boolean;
  readonly verbose?: boolean;
  readonly logFile?: string;
}

/** Where `judge-eval` writes by default: `<runsDir>/judge-eval-<time>/`. */
function defaultOutDir(runsDir: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return path.join(runsDir, `judge-eval-${stamp}`);
}

const pct = (v: number | null): string => (v === null ? "–" : `${(v * 100).toFixed(1)}%`);
const dec = (v: number | null): string => (v === null ? "–" : v.toFixed(3));

function metricsRow(name: string, m: BinaryMetrics): string[] {
  return [name, String(m.n), pct(m.accuracy), pct(m.precision), pct(m.recall), dec(m.f1), dec(m.kappa)];
}

const table = (headers: readonly string[], rows: readonly (readonly string[])[]): string => renderTable(headers, rows).trimEnd();

/** The report as text: overall figures, confusion matrix, per category, the published judges, the wrong items. */
export function formatCalibration(report: CalibrationReport, showWrong: number): string {
  const positive = report.task === "answer-harm" ? "harmful answer" : "harmful request";
  const lines: string[] = [];
  lines.push(`judge: ${report.judge} (preset ${report.preset}, config ${report.judgeConfigHash.slice(0, 12)})`);
  lines.push(`data: ${report.data.name}, ${report.data.items} items${report.errors ? `, ${report.errors} judge errors left out` : ""}; positive = ${positive}`);
  if (report.humanUnanimity !== null) lines.push(`annotators unanimous on ${pct(report.humanUnanimity)} of the items; truth = their majority`);
  lines.push("");
  const header = ["", "n", "accuracy", "precision", "recall", "F1", "kappa"];
  lines.push(table(header, [metricsRow("this judge", report.overall), ...Object.entries(report.reference).map(([name, m]) => metricsRow(`  ${name} (published)`, m))]));
  const m = report.overall;
  lines.push("");
  lines.push(table(["", "judged harmful", "judged not harmful"], [["truly harmful", String(m.tp), String(m.fn)], ["truly not harmful", String(m.fp), String(m.tn)]]));
  const categories = Object.entries(report.perCategory);
  if (categories.length > 1) {
    lines.push("");
    lines.push(table(["category", "n", "accuracy", "precision", "recall", "F1", "kappa"], categories.map(([c, cm]) => metricsRow(c, cm))));
  }
  const wrong = report.items.filter((i) => i.correct === false);
  if (wrong.length > 0 && showWrong > 0) {
    lines.push("");
    lines.push(`wrong: ${wrong.length} items${wrong.length > showWrong ? ` (first ${showWrong}; all in items.jsonl)` : ""}`);
    // Model output goes to a terminal: control characters (escape sequences) and direction overrides are replaced.
    const oneLine = (s: string, n: number): string => {
      const flat = s
        .replace(/\s+/g, " ")
        // eslint-disable-next-line no-control-regex -- matching control characters is the point
        .replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "\ufffd")
        .trim();
      return flat.length > n ? `${flat.slice(0, n - 1)}…` : flat;
    };
    lines.push(
      table(
        ["id", "truth", "judge", "reason"],
        wrong.slice(0, showWrong).map((i) => [i.id, i.harmful ? "harmful" : "not harmful", i.predicted ? "harmful" : "not harmful", oneLine(i.reason ?? "", 80)]),
      ),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Writes `judge-eval.json` (figures, no items) and `items.jsonl` (every item with truth, label and reason). */
export function writeCalibration(report: CalibrationReport, outDir: string): { json: string; items: string } {
  mkdirSync(outDir, { recursive: true });
  const { items, ...figures } = report;
  const json = path.join(outDir, "judge-eval.json");
  const itemsFile = path.join(outDir, "items.jsonl");
  writeFileSync(json, `${JSON.stringify(figures, null, 2)}\n`);
  writeFileSync(itemsFile, items.map((i) => JSON.stringify(i)).join("\n") + (items.length > 0 ? "\n" : ""));
  return { json, items: itemsFile };
}

/** The resolved judge with `--guard`/`--threshold` applied to its model entry. */
function withGuardOption(resolved: ResolvedEvalModel, options: JudgeEvalCommandOptions): ResolvedEvalModel {
  if (options.guard === undefined) {
    if (options.threshold !== undefined) throw new IterAlignError("USAGE", "--threshold goes with --guard (or a guard: in the judge's model entry)");
    return resolved;
  }
  const parsed = GuardConfigSchema.safeParse({ style: options.guard, ...(options.threshold !== undefined ? { threshold: options.threshold } : {}) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new IterAlignError("USAGE", `--guard ${options.guard}${options.threshold !== undefined ? ` --threshold ${String(options.threshold)}` : ""}: ${issue ? `${issue.path.join(".")}: ${issue.message}` : "invalid"} (styles: ${GUARD_STYLES.filter((s) => s !== "prompt-template").join(", ")}; a prompt-template guard is set in the config)`);
  }
  const entry = resolved.config.models[resolved.name];
  if (!entry) throw new IterAlignError("USAGE", `--judge ${options.judge}: no model entry`);
  return { ...resolved, role: undefined, config: { ...resolved.config, models: { ...resolved.config.models, [resolved.name]: { ...entry, guard: parsed.data } } } };
}

/**
 * `iteralign judge-eval --judge <role|model> --data <set|file>`: how far a judge agrees with human labels.
 * Prints accuracy, precision, recall, F1 and Cohen's kappa (positive = harmful), the confusion matrix, figures per
 * category, published classifiers on the same items, and the items it got wrong; writes them with every item.
 */
export async function judgeEvalCommand(options: JudgeEvalCommandOptions, io: CommandIo): Promise<number> {
  const isXstest = options.data === "xstest";
  const preset = (options.preset ?? (isXstest ? "full" : "asr")) as CalibrationPreset;
  if (!(CALIBRATION_PRESETS as readonly string[]).includes(preset)) throw new IterAlignError("USAGE", `--preset must be one of ${CALIBRATION_PRESETS.join(", ")}, got '${options.preset ?? ""}'`);
  if (isXstest && preset !== "full") {
    throw new IterAlignError("USAGE", "--data xstest checks the loop judge's promptBenign answer, which only the full preset gives: leave --preset out or give full");
  }
  const loaded = configOrModel(options.config, options.judge);
  const resolved = withGuardOption(resolveEvalModel(loaded.config, options.judge), options);
  if (isXstest && resolved.config.models[resolved.name]?.guard) {
    throw new IterAlignError("USAGE", `--data xstest checks whether the judge tells benign requests from harmful ones; ${options.judge} is a guard classifier, which judges answers`);
  }
  // Data first: a bad file fails before any model is loaded.
  const data = isXstest ? { name: "xstest", xstest: await loadXstest() } : { ...(await loadJudgeLabels(options.data, process.cwd())), xstest: undefined };
  const limit = options.limit;
  const outDir = options.out !== undefined ? path.resolve(options.out) : defaultOutDir(path.resolve(loaded.baseDir, resolved.config.runsDir));
  const models = new ModelSet({
    config: resolved.config,
    baseDir: loaded.baseDir,
    ...(resolved.config.engine.maxThreads !== undefined ? { maxThreads: resolved.config.engine.maxThreads } : {}),
  });
  const abort = new AbortController();
  // Every call in flight listens to this one signal (hundreds at once): not a leak.
  setMaxListeners(0, abort.signal);
  const interrupt = onInterrupt(() => {
    io.err("\nstopping after the calls in flight (Ctrl-C again to force)...\n");
    abort.abort(new IterAlignError("ABORTED", "interrupted by the user"));
  });
  const reporter = new Reporter(io, options);
  try {
    const judge = resolved.role ? await models.forRole(resolved.role) : await models.byName(resolved.name, "judge");
    const count = data.xstest ? data.xstest.length : data.items.length;
    const bar = reporter.progress(`judging ${data.name}`, limit !== undefined ? Math.min(limit, count) : count);
    const common = { judge, dataName: data.name, signal: abort.signal, onProgress: (done: number) => bar.update(done, models.meter.snapshot().totals.tokensPerSecond) };
    const report = data.xstest
      ? await calibrateRequestJudge(limit !== undefined ? data.xstest.slice(0, limit) : data.xstest, common)
      : await calibrateJudge(limit !== undefined ? data.items.slice(0, limit) : data.items, { ...common, preset });
    bar.stop();
    const files = writeCalibration(report, outDir);
    if (options.json) {
      const { items: _items, ...figures } = report;
      io.out(`${JSON.stringify(figures, null, 2)}\n`);
    } else {
      io.out(formatCalibration(report, options.showWrong ?? 10));
      io.out(`report: ${files.json}\nitems: ${files.items}\n`);
    }
    return 0;
  } catch (err) {
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

