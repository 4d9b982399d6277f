import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { artifacts, runCliProcess } from "../helpers/run-process.js";

/** A 2-iteration loop on the generated models in its own directory (the random judge fails answers, so every stage runs). */
function loopDir(parent: string, name: string): { dir: string; config: string; db: string } {
  const dir = path.join(parent, name);
  mkdirSync(dir, { recursive: true });
  const config = path.join(dir, "iteralign.yaml");
  writeFileSync(
    config,
    `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 1024
    sequences: 4
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
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
  return { dir, config, db: path.join(dir, ".iteralign", "iteralign.db") };
}

/**
 * A copy of a store with its response cache but no runs: a run in it redoes every stage, each call answered
 * from the cache, so a trial costs seconds while every path that writes artifacts (computed, loaded from the
 * store, retried) runs for real.
 */
function cacheOnlyCopy(from: string, to: string): void {
  mkdirSync(path.dirname(to), { recursive: true });
  const source = new Database(from, { readonly: true });
  source.exec(`VACUUM INTO '${to.replace(/'/g, "''")}'`);
  source.close();
  const copy = new Database(to);
  copy.exec("DELETE FROM records; DELETE FROM runs;");
  copy.close();
}

function markers(db: string, runId: string): string[] {
  const store = new Database(db, { readonly: true });
  try {
    return (store.prepare("SELECT id FROM records WHERE run_id = ? AND stage = 'marker' ORDER BY seq").all(runId) as Array<{ id: string }>).map((r) => r.id);
  } finally {
    store.close();
  }
}

const parent = mkdtempSync(path.join(tmpdir(), "iteralign-resume-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

describe("resume after a kill at every stage marker", () => {
  const whole = loopDir(parent, "whole");
  let expected: Map<string, string>;

  /** Runs one trial: the given fault points, one process per entry, then a final resume; compares the files. */
  async function trial(name: string, faults: readonly string[]): Promise<void> {
    const t = loopDir(parent, name);
    cacheOnlyCopy(whole.db, t.db);
    const first = await runCliProcess(["run", "--config", t.config, "--run-id", "whole"], { ITERALIGN_FAULT_AT: faults[0] ?? "" });
    const expectSignal = (faults[0] ?? "").endsWith(":SIGINT") ? null : "SIGKILL";
    if (expectSignal) expect(first.signal, `${name}: ${first.err}`).toBe(expectSignal);
    else expect(first.code, `${name}: ${first.err}`).toBe(1);
    for (const fault of faults.slice(1)) {
      const again = await runCliProcess(["run", "--config", t.config, "--resume", "whole"], { ITERALIGN_FAULT_AT: fault });
      expect(again.signal, `${name} (${fault}): ${again.err}`).toBe("SIGKILL");
    }
    const last = await runCliProcess(["run", "--config", t.config, "--resume", "whole"]);
    expect(last.code, `${name}: ${last.err}`).toBe(0);
    const got = artifacts(path.join(t.dir, "runs", "whole"));
    expect([...got.keys()].sort(), name).toEqual([...expected.keys()].sort());
    for (const [file, content] of expected) expect(got.get(file), `${name}: ${file}`).toBe(content);
    rmSync(t.dir, { recursive: true, force: true });
  }

  beforeAll(async () => {
    const run = await runCliProcess(["run", "--config", whole.config, "--run-id", "whole"]);
    expect(run.code, run.err).toBe(0);
    expected = artifacts(path.join(whole.dir, "runs", "whole"));
  }, 300_000);

  it("writes, after kill -9 at each marker of both iterations and a resume, exactly the files of an uninterrupted run", async () => {
    const all = markers(whole.db, "whole");
    // Every stage of both iterations ran (the random judge fails answers), so every marker is there.
    for (const iteration of [0, 1]) {
      for (const stage of ["red-team", "judge", "propose", "pool", "self-correct", "gate", "gate-decision", "iteration"]) {
        expect(all).toContain(`it${iteration}:done:${stage}`);
      }
    }
    for (const marker of all) await trial(`kill-${marker.replace(/[^A-Za-z0-9-]/g, "_")}`, [marker]);
  }, 900_000);

  it("also when the resume itself is killed, and when the run is stopped by SIGINT", async () => {
    await trial("kill-resume", ["it0:done:judge", "it1:done:propose"]);
    await trial("sigint", ["it0:done:self-correct:SIGINT"]);
    await trial("sigint-then-kill", ["it1:done:red-team:SIGINT", "it1:done:gate"]);
  }, 600_000);
});
