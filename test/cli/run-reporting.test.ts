import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { runCli } from "../helpers/cli.js";

function config(): { file: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-report-"));
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  target: { provider: llama-cpp, model: ${fixtureModelPath("tiny-llama")}, contextSize: 1024, sequences: 2 }
  oracle: { provider: llama-cpp, model: ${fixtureModelPath("tiny-qwen2")}, contextSize: 8192, sequences: 2 }
roles: { target: target, oracle: oracle }
data: { redTeam: [{ bundled: dangerousqa }], limit: 4 }
loop: { batchSize: 2, maxIterations: 1, redTeam: { temperature: 0, maxTokens: 8 } }
eval: { benchmarks: truthfulqa, limit: 3 }
engine: { maxThreads: 1 }
`,
  );
  return { file, dir };
}

describe("iteralign run's messages", () => {
  it("without a terminal: a line per stage, progress lines for the evaluation with its item count; quiet prints only the errors line; the log file gets everything", async () => {
    const { file, dir } = config();
    const normal = await runCli(["run", "--config", file, "--run-id", "normal", "--verbose"]);
    expect(normal.code, normal.err).toBe(0);
    expect(normal.err).toMatch(/^ {2}eval \(base\) truthfulqa: 3\/3 \(100%\)/m);
    expect(normal.err).toMatch(/^ {2}eval \(base\): 3 items in [\d.]+ s, \d+ tokens$/m);
    expect(normal.err).toMatch(/^ {2}red-team: 2 items in [\d.]+ s, \d+ tokens$/m);
    expect(normal.err).toMatch(/^ {2}judge: started, 2 items$/m);
    expect(normal.err).toMatch(/^ {2}judge: [\d.]+ tok\/s \(\d+ prompt, \d+ completion\)$/m);
    expect(normal.err).toContain("errors: 0 items");

    const log = path.join(dir, "logs", "quiet.log");
    const quiet = await runCli(["run", "--config", file, "--run-id", "quiet", "--quiet", "--log-file", log]);
    expect(quiet.code, quiet.err).toBe(0);
    expect(quiet.err.trim().split("\n")).toEqual([expect.stringMatching(/^errors: 0 items/)]);
    expect(quiet.out).toContain("run quiet: 1 iterations");
    const logged = readFileSync(log, "utf8");
    expect(logged).toMatch(/Z iteration 0: 2 prompts/);
    expect(logged).toMatch(/Z {3}judge: started, 2 items/);
    expect(logged).toMatch(/Z {3}eval \(base\): 3 items/);
    expect(logged).toMatch(/Z errors: 0 items/);
  }, 240_000);
});
