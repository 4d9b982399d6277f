import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { checkGgufFile } from "../../src/gguf/gguf-check.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { runCli } from "../helpers/cli.js";

const parent = mkdtempSync(path.join(tmpdir(), "iteralign-input-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));
let counter = 0;

/** A run config in a fresh directory; `models`/`data` replace the defaults (tiny models, bundled DangerousQA). */
function setup(options: { models?: string; data?: string; top?: string } = {}): { dir: string; config: string; db: string } {
  const dir = path.join(parent, `case-${++counter}`);
  const config = path.join(dir, "iteralign.yaml");
  const models =
    options.models ??
    `  tiny:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 1024
    sequences: 2`;
  const data =
    options.data ??
    `  redTeam:
    - bundled: dangerousqa
  limit: 2`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    config,
    `models:
${models}
roles:
  target: tiny
  oracle: tiny
data:
${data}
loop:
  batchSize: 2
  maxIterations: 1
  redTeam: { temperature: 0, maxTokens: 8 }
engine:
  maxThreads: 1
${options.top ?? ""}`,
  );
  return { dir, config, db: path.join(dir, ".iteralign", "iteralign.db") };
}

describe("bad input exits 2 with a message naming the culprit, and creates no run", () => {
  it("refuses run ids that are paths or unsafe names", async () => {
    const { dir, config, db } = setup();
    for (const id of ["../../escaped", "..", ".", "/tmp/abs-run", "a/b", ".hidden", "line\nbreak", "", "x".repeat(129)]) {
      const result = await runCli(["run", "--config", config, "--run-id", id]);
      expect(result.code, JSON.stringify(id)).toBe(2);
      expect(result.err, JSON.stringify(id)).toContain("invalid run id");
    }
    for (const id of ["../x", ".."]) {
      const result = await runCli(["run", "--config", config, "--resume", id]);
      expect(result.code).toBe(2);
    }
    expect(existsSync(db)).toBe(false);
    expect(existsSync(path.join(dir, "..", "escaped"))).toBe(false);
    expect(existsSync("/tmp/abs-run")).toBe(false);
  });

  it("a dataset with invalid content names the file and line", async () => {
    const bad = path.join(parent, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "How do I pick a lock?"}\n{"prompt": "ok"\n');
    const { config, db } = setup({ data: `  redTeam:\n    - file: ${bad}\n      promptField: prompt` });
    const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
    expect(result.code).toBe(2);
    expect(result.err).toContain(`error [DATA_INVALID]: ${bad}:2`);
    expect(existsSync(db)).toBe(false);
  });

  it("an empty red-team set says so and names the file", async () => {
    const empty = path.join(parent, "empty.jsonl");
    writeFileSync(empty, "");
    const { config, db } = setup({ data: `  redTeam:\n    - file: ${empty}\n      promptField: prompt` });
    const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
    expect(result.code).toBe(2);
    expect(result.err).toContain("error [DATA_INVALID]: the red-team set is empty");
    expect(result.err).toContain(empty);
    expect(existsSync(db)).toBe(false);
  });

  it("bad model files: empty, not a GGUF, cut short", async () => {
    const whole = fixtureModelPath("tiny-llama");
    const empty = path.join(parent, "empty.gguf");
    writeFileSync(empty, "");
    const text = path.join(parent, "weights.safetensors.gguf");
    writeFileSync(text, "this is not a model file at all, just some text");
    const cut = path.join(parent, "cut.gguf");
    copyFileSync(whole, cut);
    truncateSync(cut, Math.floor(statSync(whole).size * 0.6));
    const cases: Array<[string, RegExp]> = [
      [empty, /empty file \(0 bytes\)/],
      [text, /not a GGUF file \(it does not start with the bytes 'GGUF'\)/],
      [cut, /truncated: its \d+ tensors need \d+ bytes but the file has \d+ \(60\.0%\); the download or copy was cut short/],
    ];
    for (const [file, message] of cases) {
      const { config, db } = setup({ models: `  tiny:\n    provider: llama-cpp\n    model: ${file}` });
      const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
      expect(result.code, result.err).toBe(2);
      expect(result.err).toContain(`error [MODEL_INVALID]: models.tiny.model: model file ${file}: `);
      expect(result.err).toMatch(message);
      expect(result.err).not.toMatch(/NUL/);
      expect(existsSync(db)).toBe(false);
    }
    // The whole file passes, and its expected size is exactly accounted for.
    expect(checkGgufFile(whole).expectedBytes).toBeLessThanOrEqual(statSync(whole).size);
    // eval takes a model path too, and says the same.
    const evalResult = await runCli(["eval", "--model", empty, "--bench", "mc:unused.jsonl", "--config", setup().config]);
    expect(evalResult.code).toBe(2);
    expect(evalResult.err).toContain("empty file (0 bytes)");
  });

  it("a runsDir that cannot be created names itself", async () => {
    const file = path.join(parent, "a-file");
    writeFileSync(file, "x");
    const { config, db } = setup({ top: `runsDir: ${path.join(file, "runs")}\n` });
    const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
    expect(result.code).toBe(2);
    expect(result.err).toContain(`runsDir: cannot create ${path.join(file, "runs")}`);
    const store = new SqliteRunStore(db);
    expect(store.listRuns()).toEqual([]);
    store.close();
  });

  it("timeoutMs past Node's timer limit and bad baseUrls are config errors with the field's path", async () => {
    const served = (extra: string): string =>
      `  tiny:\n    provider: openai-compatible\n    baseUrl: ${extra}\n    model: m\n    timeoutMs: 3000000000`;
    const { config, db } = setup({ models: served("ftp://127.0.0.1/v1") });
    const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
    expect(result.code).toBe(2);
    expect(result.err).toContain("models.tiny.timeoutMs: at most 2147483647 ms");
    expect(result.err).toContain("models.tiny.baseUrl: must use http or https, not ftp");
    expect(existsSync(db)).toBe(false);
    for (const [url, message] of [
      ["http://user:hunter2@127.0.0.1:9/v1", "must not contain a user name or password"],
      ["http://127.0.0.1:9/v1?api_key=hunter2", "must not carry credentials in its query (api_key)"],
      ["not a url", "must be an absolute http(s) URL"],
    ] as const) {
      const c = setup({ models: `  tiny:\n    provider: openai-compatible\n    baseUrl: "${url}"\n    model: m` });
      const r = await runCli(["run", "--config", c.config, "--run-id", "r1"]);
      expect(r.code, url).toBe(2);
      expect(r.err).toContain(`models.tiny.baseUrl: ${message}`);
      expect(r.err).not.toContain("hunter2");
      expect(existsSync(c.db)).toBe(false);
    }
  });

  it("a damaged store fails with its path and SQLite's code", async () => {
    const { config, db, dir } = setup();
    mkdirSync(path.dirname(db), { recursive: true });
    writeFileSync(db, "SQLite format 3\u0000".padEnd(4096, "\u0001"));
    const result = await runCli(["run", "--config", config, "--run-id", "r1"]);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/error \[STORE_CORRUPT\]: run store .*iteralign\.db (is not a readable iteralign database|is damaged)/);
    expect(result.err).toMatch(/SQLITE_(NOTADB|CORRUPT)/);
    expect(readdirSync(dir)).not.toContain("runs");
    expect(readFileSync(db, "utf8").startsWith("SQLite format 3")).toBe(true);
  });
});
