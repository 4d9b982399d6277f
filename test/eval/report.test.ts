import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCsv } from "../../src/datasets/csv.js";
import type { BenchmarkResult } from "../../src/spec/benchmark.js";
import {
  appendEvalSummary,
  compareEntries,
  comparisonTable,
  csvField,
  csvLine,
  evalSummaryEntry,
  evalSummaryPath,
  itemsCsv,
  metricsCsv,
  metricsTable,
  readEvalSummary,
  writeEvalReport,
  type EvalReport,
  type EvalSummaryEntry,
} from "../../src/eval/report.js";

const tmp = (): string => mkdtempSync(path.join(tmpdir(), "iteralign-report-"));

/** A model answer with every character CSV has to be careful about. */
const NASTY = 'Sure, here it is: "step 1",\r\nthen step 2\nand =HYPERLINK("x")';

const MC: BenchmarkResult = {
  benchmark: "truthfulqa",
  mode: "loglik",
  model: "m.gguf",
  scoringPath: "native",
  metrics: [
    { name: "mc1", value: 0.5, n: 2, mode: "loglik", higherIsBetter: true, ci95: [0.0945, 0.9055] },
    { name: "mc2", value: 0.4123, n: 2, mode: "loglik", higherIsBetter: true },
  ],
  items: [
    {
      id: "tqa:0",
      category: "Misconceptions, common",
      prediction: 0,
      label: 0,
      correct: true,
      details: { choices: [{ text: "Yes, \"really\"", logprob: -1.25, tokenCount: 3 }, { text: "No", logprob: -2.5, tokenCount: 1 }] },
    },
  ],
};

const JUDGED: BenchmarkResult = {
  benchmark: "asr",
  mode: "judge",
  model: "m.gguf",
  metrics: [
    { name: "asr", value: 1, n: 1, mode: "judge", higherIsBetter: false, ci95: [0.20654931437723745, 1] },
    { name: "errors", value: 1, n: 2, mode: "judge", higherIsBetter: false },
  ],
  items: [
    { id: "d:1", category: "dangerousqa", prediction: "harmful", label: "not_harmful", correct: false, details: { response: NASTY } },
    {
      id: "d:2",
      category: "dangerousqa",
      prediction: null,
      label: "not_harmful",
      details: { response: "x", error: { stage: "judge", code: "OUTPUT_INVALID", message: 'bad "json", really' } },
    },
  ],
};

const REPORT: EvalReport = {
  model: "m.gguf",
  judge: "j.gguf",
  mode: "loglik",
  startedAt: "2025-01-01T00:00:00.000Z",
  finishedAt: "2025-01-01T00:01:00.000Z",
  seconds: 60,
  results: [MC, JUDGED],
};

describe("CSV output", () => {
  it("quotes fields per RFC 4180", () => {
    expect(csvField("plain")).toBe("plain");
    expect(csvField("a,b")).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField("two\nlines")).toBe('"two\nlines"');
    expect(csvField("cr\rhere")).toBe('"cr\rhere"');
    expect(csvField(" padded")).toBe('" padded"');
    expect(csvField(null)).toBe("");
    expect(csvField(undefined)).toBe("");
    expect(csvField(-1.5)).toBe("-1.5");
    expect(csvField(Number.NaN)).toBe("");
    expect(csvField(false)).toBe("false");
    expect(csvLine(["a", 'b"c', "d,e"])).toBe('a,"b""c","d,e"\r\n');
  });

  it("writes one row per item whose fields read back exactly, model text included", () => {
    const rows = parseCsv(itemsCsv(REPORT.results));
    expect(rows.map((r) => r.fields.length)).toEqual([10, 10, 10, 10]);
    expect(rows[0]?.fields).toEqual(["benchmark", "mode", "id", "category", "prediction", "label", "correct", "error", "choices", "details"]);
    const [mc, harmful, failed] = [rows[1]!.fields, rows[2]!.fields, rows[3]!.fields];
    expect(mc.slice(0, 8)).toEqual(["truthfulqa", "loglik", "tqa:0", "Misconceptions, common", "0", "0", "true", ""]);
    expect(JSON.parse(mc[8]!)).toEqual(MC.items[0]!.details.choices);
    expect(JSON.parse(mc[9]!)).toEqual({});
    expect(harmful.slice(0, 8)).toEqual(["asr", "judge", "d:1", "dangerousqa", "harmful", "not_harmful", "false", ""]);
    expect(harmful[8]).toBe("");
    expect((JSON.parse(harmful[9]!) as { response: string }).response).toBe(NASTY);
    expect(failed.slice(4, 8)).toEqual(["", "not_harmful", "", 'OUTPUT_INVALID: bad "json", really']);
  });

  it("writes one row per metric with its mode and interval", () => {
    const rows = parseCsv(metricsCsv(REPORT.results)).map((r) => r.fields);
    expect(rows).toEqual([
      ["benchmark", "metric", "category", "mode", "scoring_path", "value", "ci_low", "ci_high", "n", "higher_is_better"],
      ["truthfulqa", "mc1", "", "loglik", "native", "0.5", "0.0945", "0.9055", "2", "true"],
      ["truthfulqa", "mc2", "", "loglik", "native", "0.4123", "", "", "2", "true"],
      ["asr", "asr", "", "judge", "", "1", "0.20654931437723745", "1", "1", "false"],
      ["asr", "errors", "", "judge", "", "1", "", "", "2", "false"],
    ]);
  });

  it("writes eval.json, eval.csv and metrics.csv, and prints a table with the mode and CI on every row", () => {
    const dir = path.join(tmp(), "out");
    const files = writeEvalReport(REPORT, dir);
    expect(files).toEqual({ json: path.join(dir, "eval.json"), csv: path.join(dir, "eval.csv"), metrics: path.join(dir, "metrics.csv") });
    expect(JSON.parse(readFileSync(files.json, "utf8"))).toEqual(JSON.parse(JSON.stringify(REPORT)));
    expect(readFileSync(files.csv, "utf8")).toBe(itemsCsv(REPORT.results));
    expect(readFileSync(files.metrics, "utf8")).toBe(metricsCsv(REPORT.results));
    expect(readdirSync(dir).sort()).toEqual(["eval.csv", "eval.json", "metrics.csv"]);
    const lines = metricsTable(REPORT.results).trimEnd().split("\n");
    expect(lines[0]).toMatch(/^benchmark\s+metric\s+category\s+mode\s+value\s+95% CI\s+n\s+better$/);
    expect(lines[2]).toMatch(/^truthfulqa\s+mc1\s+loglik\s+0\.500\s+\[0\.095, 0\.905\]\s+2\s+higher$/);
    expect(lines[3]).toMatch(/^truthfulqa\s+mc2\s+loglik\s+0\.412\s+-\s+2\s+higher$/);
    expect(lines[4]).toMatch(/^asr\s+asr\s+judge\s+1\.000\s+\[0\.207, 1\.000\]\s+1\s+lower$/);
    expect(lines[5]).toMatch(/^asr\s+errors\s+judge\s+1\s+-\s+2\s+lower$/);
  });
});

function entry(label: string, iteration: number | null, mc1: number, asr?: number): EvalSummaryEntry {
  return {
    label,
    iteration,
    model: `${label}.gguf`,
    ...(iteration !== null ? { trainer: "sft" } : {}),
    metrics: [
      { benchmark: "truthfulqa", name: "mc1", value: mc1, n: 817, mode: "loglik", higherIsBetter: true, ci95: [mc1 - 0.03, mc1 + 0.03] },
      { benchmark: "xstest", name: "safe_refusal_rate", value: 0.2, n: 10, mode: "judge", higherIsBetter: false, category: "homonyms" },
      ...(asr !== undefined ? [{ benchmark: "asr", name: "asr", value: asr, n: 40, mode: "judge" as const, higherIsBetter: false }] : []),
    ],
  };
}

describe("the run's evaluation summary", () => {
  it("appends entries, replaces one with the same label in place, and reads them back", () => {
    const run = tmp();
    expect(readEvalSummary(run)).toEqual([]);
    appendEvalSummary(run, entry("base", null, 0.3, 0.5));
    appendEvalSummary(run, entry("iter-000", 0, 0.35, 0.4));
    const after = appendEvalSummary(run, entry("iter-001", 1, 0.4, 0.2));
    expect(after.map((e) => e.label)).toEqual(["base", "iter-000", "iter-001"]);
    appendEvalSummary(run, entry("iter-000", 0, 0.38, 0.3));
    const entries = readEvalSummary(run);
    expect(entries.map((e) => e.label)).toEqual(["base", "iter-000", "iter-001"]);
    expect(entries[1]).toEqual(entry("iter-000", 0, 0.38, 0.3));
    const file = evalSummaryPath(run);
    expect(file).toBe(path.join(run, "eval", "summary.json"));
    expect((JSON.parse(readFileSync(file, "utf8")) as { version: number }).version).toBe(1);
    // Atomic write: no temporary file is left behind.
    expect(readdirSync(path.join(run, "eval"))).toEqual(["summary.json"]);
  });

  it("rejects a damaged summary file and an invalid entry", () => {
    const run = tmp();
    appendEvalSummary(run, entry("base", null, 0.3));
    writeFileSync(evalSummaryPath(run), '{"version": 1, "entries": [{"label": "base"}]}');
    expect(() => readEvalSummary(run)).toThrow(/not an evaluation summary/);
    writeFileSync(evalSummaryPath(run), "{not json");
    expect(() => readEvalSummary(run)).toThrow(/not valid JSON/);
    expect(() => appendEvalSummary(tmp(), { ...entry("base", null, 0.3), label: "" })).toThrow();
    expect(existsSync(evalSummaryPath(run))).toBe(true);
  });

  it("builds an entry from a report, every metric tagged with its benchmark", () => {
    const built = evalSummaryEntry(REPORT, { iteration: 2, trainer: "sft" });
    expect(built.label).toBe("iter-002");
    expect(built.model).toBe("m.gguf");
    expect(built.metrics.map((m) => `${m.benchmark}/${m.name}/${m.mode}`)).toEqual([
      "truthfulqa/mc1/loglik",
      "truthfulqa/mc2/loglik",
      "asr/asr/judge",
      "asr/errors/judge",
    ]);
    expect(evalSummaryEntry(REPORT, { iteration: null }).label).toBe("base");
  });

  it("lays out one row per label, one column per overall metric and mode, with deltas from base", () => {
    const comparison = compareEntries([entry("iter-001", 1, 0.4), entry("base", null, 0.3, 0.5), entry("iter-000", 0, 0.35, 0.45)]);
    expect(comparison.columns.map((c) => c.key)).toEqual(["truthfulqa mc1 (loglik)", "asr asr (judge)"]);
    expect(comparison.rows.map((r) => r.label)).toEqual(["base", "iter-000", "iter-001"]);
    expect(comparison.rows[0]?.cells["truthfulqa mc1 (loglik)"]).toEqual({ value: 0.3, ci95: [0.27, 0.32999999999999996], n: 817 });
    expect(comparison.rows[1]?.cells["truthfulqa mc1 (loglik)"]?.delta).toBeCloseTo(0.05, 12);
    expect(comparison.rows[1]?.cells["asr asr (judge)"]?.delta).toBeCloseTo(-0.05, 12);
    expect(comparison.rows[2]?.cells["asr asr (judge)"]).toBeUndefined();
    const lines = comparisonTable(comparison).trimEnd().split("\n");
    expect(lines[0]).toMatch(/^label\s+model\s+trainer\s+truthfulqa mc1 \(loglik\)\s+asr asr \(judge\)$/);
    expect(lines[2]).toMatch(/^base\s+base\.gguf\s+-\s+0\.300\s+0\.500$/);
    expect(lines[3]).toMatch(/^iter-000\s+iter-000\.gguf\s+sft\s+0\.350 \(\+0\.050\)\s+0\.450 \(-0\.050\)$/);
    expect(lines[4]).toMatch(/^iter-001\s+iter-001\.gguf\s+sft\s+0\.400 \(\+0\.100\)\s+-$/);
  });
});
