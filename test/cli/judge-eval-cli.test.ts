import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadHarmbenchVal } from "../../src/datasets/judge-labels.js";
import type { CalibrationItem, CalibrationReport } from "../../src/eval/judge-calibration.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { runCli } from "../helpers/cli.js";

const dir = mkdtempSync(path.join(tmpdir(), "iteralign-judge-eval-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = path.join(dir, "iteralign.yaml");
writeFileSync(
  config,
  `models:
  grader:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 4096
    sequences: 4
roles: { target: grader, oracle: grader }
engine: { maxThreads: 2 }
`,
);

describe("iteralign judge-eval", () => {
  it("judges the bundled HarmBench set with the generated model; its figures equal a count over the items it wrote", async () => {
    const out = path.join(dir, "out");
    const r = await runCli(["judge-eval", "--config", config, "--judge", "judge", "--data", "harmbench-val", "--limit", "6", "--out", out, "--quiet"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("this judge");
    expect(r.out).toContain("llama_guard (published)");
    const report = JSON.parse(readFileSync(path.join(out, "judge-eval.json"), "utf8")) as Omit<CalibrationReport, "items">;
    const items = readFileSync(path.join(out, "items.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as CalibrationItem);
    expect(items).toHaveLength(6);
    // The items are the set's first six answers, with their human majority.
    const truth = (await loadHarmbenchVal()).slice(0, 6);
    expect(items.map((i) => [i.id, i.prompt, i.response, i.harmful])).toEqual(truth.map((t) => [t.id, t.prompt, t.response, t.harmful]));
    // Recount from the per-item output, independently of the code under test.
    const judged = items.filter((i) => i.predicted !== null);
    const count = (t: boolean, p: boolean): number => judged.filter((i) => i.harmful === t && i.predicted === p).length;
    const [tp, fp, fn, tn] = [count(true, true), count(false, true), count(true, false), count(false, false)];
    const n = judged.length;
    expect(report.overall).toMatchObject({ n, tp, fp, fn, tn });
    expect(report.errors).toBe(items.length - n);
    if (n > 0) expect(report.overall.accuracy).toBeCloseTo((tp + tn) / n, 12);
    if (tp + fp > 0) expect(report.overall.precision).toBeCloseTo(tp / (tp + fp), 12);
    if (tp + fn > 0) expect(report.overall.recall).toBeCloseTo(tp / (tp + fn), 12);
    const pe = n === 0 ? 1 : ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n);
    if (pe < 1) expect(report.overall.kappa).toBeCloseTo(((tp + tn) / n - pe) / (1 - pe), 12);
    for (const i of judged) expect(i.correct).toBe(i.predicted === i.harmful);
    expect(report).toMatchObject({ version: 1, task: "answer-harm", preset: "asr", data: { name: "harmbench-val", items: 6 } });
    expect(report.judgeConfigHash).toMatch(/^[0-9a-f]{64}$/);
  }, 300_000);

  it("refuses bad input before loading a model, naming the file and line or the option", async () => {
    const bad = path.join(dir, "bad.jsonl");
    writeFileSync(bad, `${JSON.stringify({ prompt: "p", response: "r", label: "harmful" })}\n${JSON.stringify({ prompt: "p", label: "safe" })}\n`);
    const r = await runCli(["judge-eval", "--config", config, "--data", bad, "--out", path.join(dir, "never")]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${bad}:2: 'response' must be a non-empty string`);
    const x = await runCli(["judge-eval", "--config", config, "--data", "xstest", "--preset", "asr"]);
    expect(x.code).toBe(2);
    expect(x.err).toContain("only the full preset gives");
    const p = await runCli(["judge-eval", "--config", config, "--preset", "strict"]);
    expect(p.code).toBe(2);
    expect(p.err).toContain("--preset must be one of asr, full, paper");
  });
});
