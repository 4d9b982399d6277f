import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { runCli } from "../helpers/cli.js";

const root = path.resolve(import.meta.dirname, "../..");

/** A loop config on the generated models: 2 iterations of 4 DangerousQA prompts. */
function loopConfig(dir: string, options: { target: string; oracle: string }): string {
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath(options.target as "tiny-qwen2")}
    contextSize: 1024
    sequences: 4
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath(options.oracle as "tiny-llama")}
    contextSize: 8192
    sequences: 4
roles:
  target: target
  oracle: oracle
data:
  redTeam:
    - bundled: dangerousqa
  limit: 8
loop:
  batchSize: 4
  redTeam: { temperature: 0, maxTokens: 24, frequencyPenalty: 0.5 }
engine:
  maxThreads: 1
`,
  );
  return file;
}

/** Every file under a run directory, with its bytes. */
function artifacts(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = path.join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.set(path.relative(dir, full), readFileSync(full, "utf8"));
    }
  };
  walk(dir);
  return out;
}

describe("iteralign run", () => {
  it("runs two iterations of batches of 4 through the CLI, and a resumed finished run rewrites the same bytes", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-loop-"));
    const config = loopConfig(dir, { target: "tiny-llama", oracle: "tiny-qwen2" });
    const first = await runCli(["run", "--config", config, "--run-id", "loop-a"]);
    expect(first.code, first.err).toBe(0);
    expect(first.out).toContain("run loop-a: 2 iterations");
    const runDir = path.join(dir, "runs", "loop-a");
    const summary = JSON.parse(readFileSync(path.join(runDir, "summary.json"), "utf8")) as {
      iterations: Array<{ iteration: number; prompts: number; attempts: number; failures: number }>;
      stopReason: string;
    };
    expect(summary.stopReason).toBe("train split exhausted");
    const finalPool = JSON.parse(readFileSync(path.join(runDir, "constitution.json"), "utf8")) as { principles: unknown[] };
    expect(finalPool.principles.length).toBeGreaterThan(0);
    expect(summary.iterations.map((m) => [m.iteration, m.prompts, m.attempts])).toEqual([
      [0, 4, 4],
      [1, 4, 4],
    ]);
    for (const it of ["000", "001"]) {
      const files = readdirSync(path.join(runDir, "iterations", it));
      // The random judge fails answers here, so every stage runs: propose, merge, self-correct, gate, export.
      expect(files).toEqual(
        expect.arrayContaining([
          "attempts.jsonl",
          "verdicts.jsonl",
          "proposals.json",
          "constitution.json",
          "constitution.md",
          "constitution.diff.md",
          "revisions.jsonl",
          "gate.jsonl",
          "sft.sharegpt.json",
          "sft.trl.jsonl",
          "sft.openai.jsonl",
          "preference.trl.jsonl",
          "preference.openai.jsonl",
          "metrics.json",
        ]),
      );
      const metrics = JSON.parse(readFileSync(path.join(runDir, "iterations", it, "metrics.json"), "utf8")) as {
        failures: number;
        revisions: number;
        errors: number;
      };
      expect(metrics.failures).toBeGreaterThan(0);
      expect(metrics.revisions).toBe(metrics.failures);
      expect(metrics.errors).toBe(0);
      expect(readFileSync(path.join(runDir, "iterations", it, "attempts.jsonl"), "utf8").trim().split("\n")).toHaveLength(4);
    }
    const split = JSON.parse(readFileSync(path.join(runDir, "split.json"), "utf8")) as { train: number; heldout: number };
    expect(split.train).toBe(8);
    expect(split.heldout).toBeGreaterThan(0);

    // Each stage's time and engine tokens are kept in the store with its completion marker.
    const store = new SqliteRunStore(path.join(dir, ".iteralign", "iteralign.db"));
    const marker = store.getRecord("loop-a", "it0:done:red-team") as { payload: { record: { seconds: number; promptTokens: number; completionTokens: number } } };
    store.close();
    expect(marker.payload.record.seconds).toBeGreaterThan(0);
    expect(marker.payload.record.promptTokens).toBeGreaterThan(0);
    expect(marker.payload.record.completionTokens).toBeGreaterThan(0);

    const before = artifacts(runDir);
    const again = await runCli(["run", "--config", config, "--resume", "loop-a"]);
    expect(again.code, again.err).toBe(0);
    // Every iteration is loaded from the store: no stage runs again.
    expect(again.err).not.toMatch(/red-team: .* in [0-9.]+ s/);
    expect(artifacts(runDir)).toEqual(before);

    const duplicate = await runCli(["run", "--config", config, "--run-id", "loop-a"]);
    expect(duplicate.code).toBe(1);
    expect(duplicate.err).toContain("loop-a");
  }, 300_000);

  it("finishes a run killed with SIGKILL mid-stage with the same artifacts as an uninterrupted run", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-kill-"));
    const config = loopConfig(dir, { target: "tiny-llama", oracle: "tiny-qwen2" });
    const whole = await runCli(["run", "--config", config, "--run-id", "whole"]);
    expect(whole.code, whole.err).toBe(0);

    // A second store and runs directory, so nothing of the uninterrupted run is reused.
    const dir2 = mkdtempSync(path.join(tmpdir(), "iteralign-kill2-"));
    const config2 = loopConfig(dir2, { target: "tiny-llama", oracle: "tiny-qwen2" });
    // One process (tsx as a loader, not its CLI, which would run the program in a child we could not kill).
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), "run", "--config", config2, "--run-id", "whole"],
      { stdio: ["ignore", "pipe", "pipe"], cwd: root },
    );
    let stderr = "";
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        // The red team of iteration 0 is committed and its judge stage is running.
        if (stderr.includes("red-team: 4 items in")) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", () => resolve());
    });
    await new Promise((r) => child.once("close", r));
    expect(child.signalCode).toBe("SIGKILL");

    const resumed = await runCli(["run", "--config", config2, "--resume", "whole"]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toContain("red-team: 4 items (from the store)");
    const a = artifacts(path.join(dir, "runs", "whole"));
    const b = artifacts(path.join(dir2, "runs", "whole"));
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [file, content] of a) expect(b.get(file), file).toBe(content);
  }, 300_000);
});
