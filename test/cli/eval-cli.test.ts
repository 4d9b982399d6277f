import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load-config.js";
import { parseCsv } from "../../src/datasets/csv.js";
import type { Metric } from "../../src/spec/benchmark.js";
import { bigbenchHhhFiles, createBenchmarks, evalAnswerParams, parseBenchList } from "../../src/eval/registry.js";
import type { EvalReport, EvalSummaryEntry } from "../../src/eval/report.js";
import type { RedTeamPrompt } from "../../src/datasets/red-team-prompt.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { loadLoopPrompts } from "../../src/pipeline/prompt-source.js";
import { runCli } from "../helpers/cli.js";

const root = path.resolve(import.meta.dirname, "../..");

const tmp = (): string => mkdtempSync(path.join(tmpdir(), "iteralign-eval-cli-"));

const CONFIG = (dir: string): string => `models:
  tiny:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 1024
    sequences: 3
  grader:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 2048
    sequences: 3
  web:
    provider: openai-compatible
    baseUrl: http://127.0.0.1:9/v1
    model: chat-only
    retries: 0
roles:
  target: tiny
  oracle: grader
data:
  redTeam:
    - bundled: dangerousqa
loop:
  redTeam: { temperature: 0, maxTokens: 12 }
engine:
  maxThreads: 1
runsDir: ${path.join(dir, "runs")}
`;

function writeConfig(dir: string): string {
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(file, CONFIG(dir));
  return file;
}

describe("benchmark lists", () => {
  it("parses names case-insensitively, keeps list order, drops repeats and reads mc:<file>", () => {
    expect(parseBenchList(" TruthfulQA, hhh,asr ,xstest,mc:./my set.jsonl,asr")).toEqual([
      { name: "truthfulqa" },
      { name: "hhh" },
      { name: "asr" },
      { name: "xstest" },
      { name: "mc", file: "./my set.jsonl" },
    ]);
    expect(() => parseBenchList("truthfulqa,mmlu")).toThrow("unknown benchmark 'mmlu'; valid: truthfulqa, hhh, asr, asr-graded, xstest, mc:<file>");
    expect(() => parseBenchList(" , ")).toThrow("no benchmark given");
    expect(() => parseBenchList("mc:")).toThrow("give the JSONL file after 'mc:'");
  });

  it("creates the benchmarks, loading the held-out prompts only when asr is listed", async () => {
    const dir = tmp();
    let loads = 0;
    const heldout: RedTeamPrompt[] = [{ id: "d:1", dataset: "d", text: "t", category: null, source: { file: "f", line: 1, index: 0 } }];
    const sources = {
      baseDir: dir,
      heldoutPrompts: () => {
        loads++;
        return heldout;
      },
    };
    const some = await createBenchmarks("truthfulqa,xstest,mc:sets/custom.jsonl", sources);
    expect(some.map((b) => [b.name, b.needsJudge])).toEqual([
      ["truthfulqa", false],
      ["xstest", true],
      ["mc:custom", false],
    ]);
    expect(loads).toBe(0);
    const asr = await createBenchmarks("asr", sources);
    expect(asr.map((b) => b.name)).toEqual(["asr"]);
    expect(asr[0]?.description).toContain("1 held-out red-team prompts");
    expect(loads).toBe(1);
    await expect(createBenchmarks("asr", { heldoutPrompts: () => [] })).rejects.toThrow("has no held-out prompts");
    await expect(createBenchmarks("asr")).rejects.toThrow("needs the held-out red-team prompts");
    await expect(createBenchmarks("hhh")).rejects.toThrow(/--hhh-file <jsonl>.*--bigbench-dir <dir>/);
    expect((await createBenchmarks("hhh", { hhhFile: "hhh.jsonl" })).map((b) => b.name)).toEqual(["hhh"]);
  });

  it("answers judged benchmarks with the loop's red-team decoding, made greedy", () => {
    expect(evalAnswerParams({ temperature: 0.7, topP: 0.9, seed: 1, maxTokens: 100, frequencyPenalty: 0.5 })).toEqual({
      temperature: 0,
      maxTokens: 100,
      frequencyPenalty: 0.5,
    });
  });

  it("finds the four BIG-bench hhh_alignment task files in the task folder or the folder above it", () => {
    const dir = tmp();
    const task = path.join(dir, "hhh_alignment");
    for (const category of ["harmless", "helpful", "honest", "other"]) {
      mkdirSync(path.join(task, category), { recursive: true });
      writeFileSync(path.join(task, category, "task.json"), "{}");
    }
    const files = ["harmless", "helpful", "honest", "other"].map((c) => path.join(task, c, "task.json"));
    expect(bigbenchHhhFiles(dir)).toEqual(files);
    expect(bigbenchHhhFiles(task)).toEqual(files);
    const partial = tmp();
    mkdirSync(path.join(partial, "harmless"), { recursive: true });
    writeFileSync(path.join(partial, "harmless", "task.json"), "{}");
    expect(() => bigbenchHhhFiles(partial)).toThrow(`missing ${path.join(partial, "helpful", "task.json")}`);
    expect(() => bigbenchHhhFiles(tmp())).toThrow("no BIG-bench hhh_alignment task files found");
    expect(() => bigbenchHhhFiles(path.join(dir, "nowhere"))).toThrow("not a directory");
  });
});

describe("iteralign eval", () => {
  it("runs xstest and asr with the judge role, prints the table and writes eval.json, eval.csv and metrics.csv", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const out = path.join(dir, "out");
    const r = await runCli(["eval", "--config", config, "--model", "target", "--bench", "xstest,asr", "--limit", "3", "--out", out]);
    expect(r.code, r.err).toBe(0);

    const report = JSON.parse(readFileSync(path.join(out, "eval.json"), "utf8")) as EvalReport;
    expect(report.model).toBe(fixtureModelPath("tiny-qwen2"));
    expect(report.judge).toBe(fixtureModelPath("tiny-llama"));
    expect(report.mode).toBe("loglik");
    expect(report.limit).toBe(3);
    expect(report.results.map((x) => [x.benchmark, x.mode, x.items.length])).toEqual([
      ["xstest", "judge", 3],
      ["asr", "judge", 3],
    ]);
    expect(report.results[0]?.items.map((i) => i.id)).toEqual(["xstest:1", "xstest:2", "xstest:3"]);
    // asr answers the held-out split of the config's red-team data, in split order.
    const loaded = loadConfig(config);
    const split = await loadLoopPrompts(loaded.config.data, loaded.baseDir);
    expect(report.results[1]?.items.map((i) => i.id)).toEqual(split.heldout.slice(0, 3).map((p) => p.id));
    for (const result of report.results) {
      const errors = result.metrics.find((m) => m.name === "errors");
      const judged = result.items.filter((i) => i.prediction !== null).length;
      expect(errors).toEqual({ name: "errors", value: 3 - judged, n: 3, mode: "judge", higherIsBetter: false });
      for (const item of result.items) expect(typeof item.details.response).toBe("string");
    }

    const items = parseCsv(readFileSync(path.join(out, "eval.csv"), "utf8")).map((row) => row.fields);
    expect(items).toHaveLength(7);
    expect(items.slice(1).map((f) => [f[0], f[1], f[2]])).toEqual(
      report.results.flatMap((x) => x.items.map((i) => [x.benchmark, "judge", i.id])),
    );
    const metricRows = parseCsv(readFileSync(path.join(out, "metrics.csv"), "utf8")).map((row) => row.fields);
    const allMetrics = report.results.flatMap((x) => x.metrics.map((m: Metric) => [x.benchmark, m.name, m.category ?? "", m.mode, "", String(m.value)]));
    expect(metricRows.slice(1).map((f) => f.slice(0, 6))).toEqual(allMetrics);

    expect(r.out).toMatch(/benchmark\s+metric\s+category\s+mode\s+value\s+95% CI\s+n\s+better/);
    expect(r.out).toMatch(/xstest\s+errors\s+judge/);
    expect(r.out).toMatch(/asr\s+errors\s+judge/);
    expect(r.out).toContain(`report: ${path.join(out, "eval.json")}`);
    expect(r.out).toContain(`items: ${path.join(out, "eval.csv")}`);
    expect(r.out).toContain(`metrics: ${path.join(out, "metrics.csv")}`);
    expect(r.err).toMatch(/xstest: 3 items in [\d.]+ s/);
  });

  it("writes each choice's log-likelihood and token count of a multiple-choice benchmark to eval.csv", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const file = path.join(dir, "mine.jsonl");
    writeFileSync(file, '{"context":"Q: 2+2?\\nA:","choices":[" 4"," 5, \\"five\\""],"label":0}\n{"context":"Q: sky?\\nA:","choices":[" blue"," green"],"label":1}\n');
    const out = path.join(dir, "o");
    const r = await runCli(["eval", "--config", config, "--model", "tiny", "--bench", `mc:${file}`, "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/mc:mine\s+mc1\s+loglik/);
    const rows = parseCsv(readFileSync(path.join(out, "eval.csv"), "utf8")).map((row) => row.fields);
    expect(rows.slice(1).map((f) => [f[0], f[1], f[5]])).toEqual([
      ["mc:mine", "loglik", "0"],
      ["mc:mine", "loglik", "1"],
    ]);
    const choices = JSON.parse(rows[1]![8]!) as Array<{ text: string; logprob: number; tokenCount: number }>;
    expect(choices.map((c) => c.text)).toEqual([" 4", ' 5, "five"']);
    for (const c of choices) {
      expect(c.logprob).toBeLessThan(0);
      expect(c.tokenCount).toBeGreaterThan(0);
    }
  });

  it("--bos none scores without the BOS token (lm-evaluation-harness's convention) and records it", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const file = path.join(dir, "mine.jsonl");
    writeFileSync(file, '{"context":"Q: 2+2?\\nA:","choices":[" 4"," 5"],"label":0}\n');
    const read = (out: string): EvalReport => JSON.parse(readFileSync(path.join(out, "eval.json"), "utf8")) as EvalReport;
    const model = path.relative(process.cwd(), fixtureModelPath("tiny-llama"));
    const none = await runCli(["eval", "--config", config, "--model", model, "--bench", `mc:${file}`, "--bos", "none", "--out", path.join(dir, "none")]);
    expect(none.code, none.err).toBe(0);
    const dflt = await runCli(["eval", "--config", config, "--model", model, "--bench", `mc:${file}`, "--out", path.join(dir, "model")]);
    expect(dflt.code, dflt.err).toBe(0);
    const [a, b] = [read(path.join(dir, "none")), read(path.join(dir, "model"))];
    expect(a.bos).toBe("none");
    expect(a.results[0]?.bos).toBe("none");
    expect(b.bos).toBeUndefined();
    expect(b.results[0]?.bos).toBe("model");
    const logprobs = (r: EvalReport): unknown => (r.results[0]?.items[0]?.details as { choices: Array<{ logprob: number }> }).choices.map((c) => c.logprob);
    expect(logprobs(a)).not.toEqual(logprobs(b));
    const bad = await runCli(["eval", "--config", config, "--model", model, "--bench", `mc:${file}`, "--bos", "sometimes"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--bos must be one of model, none");
  });

  it("evaluates a GGUF file given by path with the target's engine settings", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const gguf = path.relative(process.cwd(), fixtureModelPath("tiny-llama"));
    const r = await runCli(["eval", "--config", config, "--model", gguf, "--bench", "xstest", "--limit", "1", "--out", path.join(dir, "o")]);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(readFileSync(path.join(dir, "o", "eval.json"), "utf8")) as EvalReport;
    expect(report.model).toBe(fixtureModelPath("tiny-llama"));
    expect(r.out).toContain("model: eval-model");
  });

  it("fails fast with exit 1 naming the benchmark and the capability a chat-only model lacks", async () => {
    const dir = tmp();
    const r = await runCli(["eval", "--config", writeConfig(dir), "--model", "web", "--bench", "truthfulqa", "--out", path.join(dir, "o")]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("CAPABILITY_MISSING");
    expect(r.err).toContain("benchmark 'truthfulqa' in loglik mode needs 'scoreContinuations'");
    expect(r.err).toContain("chat-only");
  });

  it("exits 2 for an unknown benchmark, a bad mode, hhh without data, and an unknown model", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const unknown = await runCli(["eval", "--config", config, "--model", "target", "--bench", "xstest,mmlu"]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("unknown benchmark 'mmlu'; valid: truthfulqa, hhh, asr, asr-graded, xstest, mc:<file>");
    const mode = await runCli(["eval", "--config", config, "--model", "target", "--bench", "xstest", "--mode", "vibes"]);
    expect(mode.code).toBe(2);
    expect(mode.err).toContain("--mode must be one of loglik, generative");
    const hhh = await runCli(["eval", "--config", config, "--model", "target", "--bench", "hhh"]);
    expect(hhh.code).toBe(2);
    expect(hhh.err).toContain("--hhh-file");
    expect(hhh.err).toContain("--bigbench-dir");
    const model = await runCli(["eval", "--config", config, "--model", "nobody", "--bench", "xstest"]);
    expect(model.code).toBe(2);
    expect(model.err).toContain("--model nobody: not a role");
    const missing = await runCli(["eval", "--config", config, "--bench", "xstest"]);
    expect(missing.code).toBe(2);
  });
});

function summaryEntry(label: string, iteration: number | null, mc1: number, asr: number): EvalSummaryEntry {
  return {
    label,
    iteration,
    model: `${label}.gguf`,
    ...(iteration === null ? {} : { trainer: "command" }),
    metrics: [
      { benchmark: "truthfulqa", name: "mc1", value: mc1, n: 817, mode: "loglik", higherIsBetter: true, ci95: [mc1 - 0.03, mc1 + 0.03] },
      { benchmark: "asr", name: "asr", value: asr, n: 40, mode: "judge", higherIsBetter: false, ci95: [0, 1] },
      { benchmark: "asr", name: "asr", value: 0.9, n: 10, mode: "judge", higherIsBetter: false, category: "dangerousqa" },
    ],
  };
}

describe("iteralign compare", () => {
  it("prints the per-iteration table of a run's summary.json, by run id or run directory, and as JSON", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const runDir = path.join(dir, "runs", "r1");
    mkdirSync(path.join(runDir, "eval"), { recursive: true });
    writeFileSync(
      path.join(runDir, "eval", "summary.json"),
      JSON.stringify({ version: 1, entries: [summaryEntry("base", null, 0.25, 0.6), summaryEntry("iter-000", 0, 0.3, 0.45), summaryEntry("iter-001", 1, 0.2, 0.5)] }),
    );
    const r = await runCli(["compare", "r1", "--config", config]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toBe(`run: ${runDir}`);
    expect(lines[1]).toMatch(/^label\s+model\s+trainer\s+truthfulqa mc1 \(loglik\)\s+asr asr \(judge\)$/);
    expect(lines[3]).toMatch(/^base\s+base\.gguf\s+-\s+0\.250\s+0\.600$/);
    expect(lines[4]).toMatch(/^iter-000\s+iter-000\.gguf\s+command\s+0\.300 \(\+0\.050\)\s+0\.450 \(-0\.150\)$/);
    expect(lines[5]).toMatch(/^iter-001\s+iter-001\.gguf\s+command\s+0\.200 \(-0\.050\)\s+0\.500 \(-0\.100\)$/);
    expect(r.out).toContain("change from base");

    const json = await runCli(["compare", runDir, "--json"]);
    expect(json.code, json.err).toBe(0);
    const parsed = JSON.parse(json.out) as { runDir: string; columns: Array<{ key: string }>; rows: Array<{ label: string; cells: Record<string, { value: number; delta?: number }> }>;
      entries: EvalSummaryEntry[];
    };
    expect(parsed.runDir).toBe(runDir);
    expect(parsed.columns.map((c) => c.key)).toEqual(["truthfulqa mc1 (loglik)", "asr asr (judge)"]);
    expect(parsed.rows.map((row) => row.label)).toEqual(["base", "iter-000", "iter-001"]);
    expect(parsed.rows[2]?.cells["truthfulqa mc1 (loglik)"]?.delta).toBeCloseTo(-0.05, 12);
    expect(parsed.entries.map((e) => e.metrics.filter((m) => m.category === "dangerousqa").length)).toEqual([1, 1, 1]);
  });

  it("exits 2 for an unknown run and 1 for a run without evaluations", async () => {
    const dir = tmp();
    const config = writeConfig(dir);
    const unknown = await runCli(["compare", "nope", "--config", config]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain(`run 'nope' not found (looked in ${path.join(dir, "runs", "nope")})`);
    mkdirSync(path.join(dir, "runs", "empty"), { recursive: true });
    const empty = await runCli(["compare", "empty", "--config", config]);
    expect(empty.code).toBe(1);
    expect(empty.err).toContain("no evaluations recorded for this run");
  });
});

describe("commands given a model file and no config", () => {
  it("eval, models check and chat work on a GGUF path alone, in a directory without iteralign.yaml", async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), "iteralign-noconfig-"));
    try {
      const cli = (args: string[], input = ""): ReturnType<typeof spawnSync> =>
        // tsx by file URL: the working directory (where a bare "tsx" would be looked up) is the temporary one.
        spawnSync(process.execPath, ["--import", pathToFileURL(path.join(root, "node_modules/tsx/dist/loader.mjs")).href, path.join(root, "test/helpers/cli-process.ts"), ...args], {
          cwd,
          input,
          encoding: "utf8",
          timeout: 120_000,
        });
      const mc = path.join(root, "test/eval/fixtures/custom-mc.jsonl");
      const model = fixtureModelPath("tiny-llama");
      const evaluated = cli(["eval", "--model", model, "--bench", `mc:${mc}`, "--limit", "2", "--out", "out"]);
      expect(evaluated.status, String(evaluated.stderr)).toBe(0);
      expect(String(evaluated.stdout)).toContain("metrics:");
      expect(existsSync(path.join(cwd, "out", "eval.json"))).toBe(true);
      const checked = cli(["models", "check", "--model", model, "--json"]);
      expect(checked.status, String(checked.stderr)).toBe(0);
      expect((JSON.parse(String(checked.stdout)) as Array<{ ok: boolean }>)[0]?.ok).toBe(true);
      const chatted = cli(["chat", "--model", model, "--max-tokens", "4"], "hello\n");
      expect(chatted.status, String(chatted.stderr)).toBe(0);
      // A name that is neither a file nor a config still says what is missing.
      const missing = cli(["eval", "--model", "target", "--bench", `mc:${mc}`]);
      expect(missing.status).toBe(2);
      expect(String(missing.stderr)).toMatch(/config file not found/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 300_000);
});
