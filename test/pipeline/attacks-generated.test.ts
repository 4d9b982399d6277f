import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import type { UsedAttack } from "../../src/pipeline/attack-stage.js";
import type { IterationMetrics } from "../../src/spec/artifacts.js";
import { runCli } from "../helpers/cli.js";
import { artifacts } from "../helpers/run-process.js";

/**
 * loop.attacks on the generated models (real engine, random weights): the oracle writes attacks through its JSON
 * grammar, the judge screens them, the batch mixes them with replays and the train split; a run killed with
 * SIGKILL after its first judge stage resumes to the same bytes as an uninterrupted run.
 */
const root = path.resolve(import.meta.dirname, "../..");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(dir: string): string {
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  target: { provider: llama-cpp, model: ${fixtureModelPath("tiny-llama")}, contextSize: 2048, sequences: 4 }
  oracle: { provider: llama-cpp, model: ${fixtureModelPath("tiny-qwen2")}, contextSize: 8192, sequences: 4, maxTokens: 256 }
roles: { target: target, oracle: oracle }
data: { redTeam: [{ bundled: dangerousqa }], limit: 8 }
loop:
  batchSize: 4
  maxIterations: 2
  redTeam: { temperature: 0, maxTokens: 24, frequencyPenalty: 0.5 }
  attacks: { fresh: 0.5, replay: 0.25, perCategory: 2, strategies: [plain, "leetspeak:light"], heldoutShare: 0.5 }
engine: { maxThreads: 1 }
`,
  );
  return file;
}

describe("loop.attacks on the generated models", () => {
  it("runs two iterations with attacks, and a run killed with SIGKILL resumes to the same bytes", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-attacks-gen-"));
    dirs.push(dir);
    const whole = await runCli(["run", "--config", config(dir), "--run-id", "whole"]);
    expect(whole.code, whole.err).toBe(0);
    const runDir = path.join(dir, "runs", "whole");
    for (const it of ["000", "001"]) {
      const metrics = JSON.parse(readFileSync(path.join(runDir, "iterations", it, "metrics.json"), "utf8")) as IterationMetrics;
      const attacks = readFileSync(path.join(runDir, "iterations", it, "attacks.jsonl"), "utf8").trim().split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as UsedAttack);
      expect(metrics.attacks).toBeDefined();
      const a = metrics.attacks as NonNullable<IterationMetrics["attacks"]>;
      // The pool's records and the metrics agree, and the batch is the train split's share plus what was added.
      expect(a.generated).toBe(attacks.length);
      expect(a.accepted).toBe(attacks.filter((x) => x.status === "accepted").length);
      expect(a.batch.fresh).toBe(attacks.filter((x) => x.use === "train").length);
      expect(a.heldout).toBe(attacks.filter((x) => x.use === "heldout").length);
      expect(a.batch.static).toBe(1);
      expect(a.batch.fresh).toBeLessThanOrEqual(2);
      expect(a.batch.replay).toBeLessThanOrEqual(1);
      expect(metrics.prompts).toBe(a.batch.static + a.batch.replay + a.batch.fresh);
      expect(Object.values(a.bySource).reduce((s, t) => s + t.attempts, 0)).toBe(metrics.attempts);
      for (const x of attacks.filter((y) => y.use !== null)) expect(["plain", "leetspeak:light"]).toContain(x.strategy);
    }

    // The same run, killed after its first judge stage and resumed, in a fresh store and runs directory.
    const dir2 = mkdtempSync(path.join(tmpdir(), "iteralign-attacks-gen2-"));
    dirs.push(dir2);
    const config2 = config(dir2);
    const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), "run", "--config", config2, "--run-id", "whole"], {
      stdio: ["ignore", "pipe", "pipe"],
      cwd: root,
    });
    let stderr = "";
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (/judge: \d+ items in/.test(stderr)) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", () => resolve());
    });
    await new Promise((r) => child.once("close", r));
    expect(child.signalCode, stderr).toBe("SIGKILL");
    const resumed = await runCli(["run", "--config", config2, "--resume", "whole"]);
    expect(resumed.code, resumed.err).toBe(0);
    const a = artifacts(runDir);
    const b = artifacts(path.join(dir2, "runs", "whole"));
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [file, content] of a) expect(b.get(file), file).toBe(content);
  }, 600_000);
});
