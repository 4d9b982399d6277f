import { writeFileAtomic } from "../util/atomic-write.js";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { renderTable } from "../util/table.js";
import { IterAlignError } from "../spec/errors.js";
import type { BenchmarkResult, BosConvention, ItemResult, Metric } from "../spec/benchmark.js";
import { EvalSummaryEntrySchema, EvalSummaryFileSchema } from "../spec/artifacts.js";
import { stableJson } from "../util/canonical-json.js";

/**
 * Evaluation outputs: the report (`eval.json`), per-item rows (`eval.csv`), metrics (`metrics.csv`), the metrics
 * table the CLI prints, and a run's per-iteration summary (`runs/<id>/eval/summary.json`). Everything a model
 * wrote is untrusted text: it only ever lands in JSON strings and RFC 4180-quoted CSV fields.
 */

/** The outcome of `runEvaluation`: every benchmark's result for one model, and how it was produced. */
export interface EvalReport {
  /** The evaluated model's id (file path, hf: URI or API model name). */
  readonly model: string;
  /** The judge's model id, when a judged benchmark ran. */
  readonly judge?: string;
  /** The requested mode of multiple-choice benchmarks; each result and metric carries the mode it used. */
  readonly mode: "loglik" | "generative";
  readonly limit?: number;
  /** Loglik scoring's BOS convention, when it was not the model's own (`none`: lm-evaluation-harness's). */
  readonly bos?: BosConvention;
  /** ISO 8601 times. */
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly seconds: number;
  readonly results: readonly BenchmarkResult[];
}

/** Where {@link writeEvalReport} wrote. */
export interface EvalReportFiles {
  readonly json: string;
  readonly csv: string;
  readonly metrics: string;
}

/**
 * One CSV field per RFC 4180: quoted when it holds a comma, a double quote, CR or LF (or starts/ends with a
 * space, which some readers trim), with inner quotes doubled. null/undefined become an empty field.
 */
export function csvField(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return "";
  const text = typeof value === "number" ? numberText(value) : String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function numberText(value: number): string {
  return Number.isFinite(value) ? String(value) : "";
}

/** One CSV record, CRLF-terminated as RFC 4180 specifies. */
export function csvLine(fields: readonly (string | number | boolean | null | undefined)[]): string {
  return `${fields.map(csvField).join(",")}\r\n`;
}

/** Columns of `eval.csv`. */
export const ITEM_CSV_COLUMNS = [
  "benchmark",
  "mode",
  "id",
  "category",
  "prediction",
  "label",
  "correct",
  "error",
  "choices",
  "details",
] as const;

/**
 * `eval.csv`: one row per item. `choices` is the JSON of the item's per-choice scores (`details.choices`: each
 * choice's log-likelihood and token count) when the benchmark records them; `details` is the JSON of every other
 * detail (the answer and the judge's reason for judged benchmarks); `error` is `CODE: message` of an error row.
 */
export function itemsCsv(results: readonly BenchmarkResult[]): string {
  const lines = [csvLine(ITEM_CSV_COLUMNS)];
  for (const result of results) {
    for (const item of result.items) {
      const { choices, ...rest } = item.details;
      lines.push(
        csvLine([
          result.benchmark,
          result.mode,
          item.id,
          item.category,
          valueText(item.prediction),
          valueText(item.label),
          item.correct,
          errorText(item),
          choices === undefined ? null : JSON.stringify(choices),
          JSON.stringify(rest),
        ]),
      );
    }
  }
  return lines.join("");
}

function valueText(value: string | number | null): string | null {
  return value === null ? null : String(value);
}

function errorText(item: ItemResult): string | null {
  const error = item.details.error;
  if (typeof error !== "object" || error === null) return null;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return `${typeof code === "string" ? code : "ERROR"}: ${typeof message === "string" ? message : ""}`;
}

/** Columns of `metrics.csv`. */
export const METRICS_CSV_COLUMNS = ["benchmark", "metric", "category", "mode", "scoring_path", "value", "ci_low", "ci_high", "n", "higher_is_better"] as const;

/** `metrics.csv`: one row per metric (overall rows have an empty category). */
export function metricsCsv(results: readonly BenchmarkResult[]): string {
  const lines = [csvLine(METRICS_CSV_COLUMNS)];
  for (const result of results) {
    for (const m of result.metrics) {
      lines.push(csvLine([result.benchmark, m.name, m.category, m.mode, result.scoringPath, m.value, m.ci95?.[0], m.ci95?.[1], m.n, m.higherIsBetter]));
    }
  }
  return lines.join("");
}

/** A metric's value as the tables print it: proportions to 3 decimals, counts as integers. */
export function formatMetricValue(metric: Pick<Metric, "value" | "ci95">): string {
  if (!Number.isFinite(metric.value)) return "-";
  if (metric.ci95 === undefined && Number.isInteger(metric.value)) return String(metric.value);
  return metric.value.toFixed(3);
}

function formatCi(ci: readonly [number, number] | undefined): string {
  return ci === undefined ? "-" : `[${ci[0].toFixed(3)}, ${ci[1].toFixed(3)}]`;
}

/** The metrics table the CLI prints: one row per metric, each with its mode, value, 95% CI and n. */
export function metricsTable(results: readonly BenchmarkResult[]): string {
  const rows = results.flatMap((r) =>
    r.metrics.map((m) => [
      r.benchmark,
      m.name,
      m.category ?? "",
      m.mode,
      formatMetricValue(m),
      formatCi(m.ci95),
      String(m.n),
      m.higherIsBetter ? "higher" : "lower",
    ]),
  );
  return renderTable(["benchmark", "metric", "category", "mode", "value", "95% CI", "n", "better"], rows.map((row) => row.map(printable)));
}

/** Keeps a table cell on one line whatever text it holds (categories come from data files). */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, " ");
}

/** Writes a file atomically (see writeFileAtomic: stale temporary files of a killed process are removed). */
function writeAtomic(file: string, content: string): void {
  writeFileAtomic(file, content);
}

/** Writes `eval.json` (the whole report, per-item results included), `eval.csv` and `metrics.csv` under `outDir`. */
export function writeEvalReport(report: EvalReport, outDir: string): EvalReportFiles {
  const files = {
    json: path.join(outDir, "eval.json"),
    csv: path.join(outDir, "eval.csv"),
    metrics: path.join(outDir, "metrics.csv"),
  };
  writeAtomic(files.json, `${stableJson(report, 2)}\n`);
  writeAtomic(files.csv, itemsCsv(report.results));
  writeAtomic(files.metrics, metricsCsv(report.results));
  return files;
}

// ---------------------------------------------------------------------------------------------------------------
// A run's per-iteration evaluation summary: runs/<id>/eval/summary.json

/** One metric of a summary entry, with the benchmark it belongs to. */
export type SummaryMetric = Metric & { benchmark: string };

/** One evaluation of a run's model: the base model (`label: "base"`) or the model after an iteration. */
export interface EvalSummaryEntry {
  /** `base` or `iter-000`, `iter-001`, ...; unique within the file. */
  label: string;
  /** The iteration whose trained model was evaluated; null for the base model. */
  iteration: number | null;
  model: string;
  trainer?: string;
  metrics: SummaryMetric[];
}

/**
 * The file's format: `{"version": 1, "entries": [EvalSummaryEntry, ...]}`, entries in the order they were first
 * appended (an entry appended again under its label replaces the old one in place).
 */
export interface EvalSummaryFile {
  version: 1;
  entries: EvalSummaryEntry[];
}

/** Where a run keeps its evaluation summary, relative to the run directory. */
export const EVAL_SUMMARY_FILE = path.join("eval", "summary.json");

/** The summary file of a run directory. */
export function evalSummaryPath(runDir: string): string {
  return path.join(runDir, EVAL_SUMMARY_FILE);
}


/** The entries of a run's summary, in file order; [] when the run has none yet. A damaged file is DATA_INVALID. */
export function readEvalSummary(runDir: string): EvalSummaryEntry[] {
  const file = evalSummaryPath(runDir);
  if (!existsSync(file)) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new IterAlignError("DATA_INVALID", `${file}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const parsed = EvalSummaryFileSchema.safeParse(raw);
  if (!parsed.success) throw new IterAlignError("DATA_INVALID", `${file}: not an evaluation summary: ${z.prettifyError(parsed.error)}`);
  return parsed.data.entries;
}

/**
 * Adds an entry to a run's summary, replacing the entry with the same label in place (re-evaluating an iteration
 * never duplicates it), and writes the file atomically. Returns the entries as written.
 */
export function appendEvalSummary(runDir: string, entry: EvalSummaryEntry): EvalSummaryEntry[] {
  const checked = EvalSummaryEntrySchema.parse(entry);
  const entries = readEvalSummary(runDir);
  const at = entries.findIndex((e) => e.label === checked.label);
  if (at >= 0) entries[at] = checked;
  else entries.push(checked);
  const content: EvalSummaryFile = { version: 1, entries };
  writeAtomic(evalSummaryPath(runDir), `${stableJson(content, 2)}\n`);
  return entries;
}

/** The summary label of an iteration's model: `iter-000`, `iter-001`, ...; `base` for null. */
export function evalSummaryLabel(iteration: number | null): string {
  return iteration === null ? "base" : `iter-${String(iteration).padStart(3, "0")}`;
}

/** Builds a summary entry from an evaluation report: every metric of every result, tagged with its benchmark. */
export function evalSummaryEntry(report: EvalReport, options: { iteration: number | null; label?: string; trainer?: string }): EvalSummaryEntry {
  return {
    label: options.label ?? evalSummaryLabel(options.iteration),
    iteration: options.iteration,
    model: report.model,
    ...(options.trainer !== undefined ? { trainer: options.trainer } : {}),
    metrics: report.results.flatMap((r) => r.metrics.map((m) => ({ benchmark: r.benchmark, ...m }))),
  };
}

/** One column of the comparison table: a benchmark's overall metric in one mode. */
export interface ComparisonColumn {
  readonly key: string;
  readonly benchmark: string;
  readonly metric: string;
  readonly mode: Metric["mode"];
  readonly higherIsBetter: boolean;
}

/** One cell: the value, its interval and n, and the change from the base entry when there is one. */
export interface ComparisonCell {
  readonly value: number;
  readonly ci95?: readonly [number, number];
  readonly n: number;
  /** value − base value; absent for the base row and where the base lacks the metric. */
  readonly delta?: number;
}

export interface ComparisonRow {
  readonly label: string;
  readonly iteration: number | null;
  readonly model: string;
  readonly trainer?: string;
  /** By column key; absent where the entry lacks the metric. */
  readonly cells: Readonly<Record<string, ComparisonCell>>;
}

export interface Comparison {
  readonly columns: readonly ComparisonColumn[];
  readonly rows: readonly ComparisonRow[];
}

/**
 * Lays out summary entries for `iteralign compare`: one row per label (base first, then by iteration), one
 * column per benchmark's overall metric and mode (per-category metrics stay in the JSON), deltas against `base`.
 */
export function compareEntries(entries: readonly EvalSummaryEntry[]): Comparison {
  const columns = new Map<string, ComparisonColumn>();
  const keyOf = (m: SummaryMetric): string => `${m.benchmark} ${m.name} (${m.mode})`;
  for (const entry of entries) {
    for (const m of entry.metrics) {
      if (m.category !== undefined) continue;
      const key = keyOf(m);
      if (!columns.has(key)) columns.set(key, { key, benchmark: m.benchmark, metric: m.name, mode: m.mode, higherIsBetter: m.higherIsBetter });
    }
  }
  const overall = (entry: EvalSummaryEntry): Map<string, SummaryMetric> =>
    new Map(entry.metrics.filter((m) => m.category === undefined).map((m) => [keyOf(m), m]));
  const base = entries.find((e) => e.label === "base");
  const baseMetrics = base ? overall(base) : new Map<string, SummaryMetric>();
  const order = (e: EvalSummaryEntry): number => (e.label === "base" ? -1 : e.iteration ?? Number.MAX_SAFE_INTEGER);
  const sorted = entries.map((e, i) => ({ e, i })).sort((a, b) => order(a.e) - order(b.e) || a.i - b.i).map(({ e }) => e);
  const rows = sorted.map((entry): ComparisonRow => {
    const cells: Record<string, ComparisonCell> = {};
    for (const [key, m] of overall(entry)) {
      const ref = entry === base ? undefined : baseMetrics.get(key);
      cells[key] = {
        value: m.value,
        ...(m.ci95 ? { ci95: m.ci95 } : {}),
        n: m.n,
        ...(ref !== undefined ? { delta: m.value - ref.value } : {}),
      };
    }
    return {
      label: entry.label,
      iteration: entry.iteration,
      model: entry.model,
      ...(entry.trainer !== undefined ? { trainer: entry.trainer } : {}),
      cells,
    };
  });
  return { columns: [...columns.values()], rows };
}

/** The comparison as a text table: `value (+delta)` per cell, `-` where an entry lacks the metric. */
export function comparisonTable(comparison: Comparison): string {
  const headers = ["label", "model", "trainer", ...comparison.columns.map((c) => c.key)];
  const rows = comparison.rows.map((row) => [
    row.label,
    row.model,
    row.trainer ?? "-",
    ...comparison.columns.map((c) => {
      const cell = row.cells[c.key];
      if (!cell) return "-";
      const value = formatMetricValue(cell);
      if (cell.delta === undefined) return value;
      const digits = cell.ci95 === undefined && Number.isInteger(cell.delta) ? 0 : 3;
      return `${value} (${cell.delta >= 0 ? "+" : "-"}${Math.abs(cell.delta).toFixed(digits)})`;
    }),
  ]);
  return renderTable(headers, rows.map((row) => row.map(printable)));
}
