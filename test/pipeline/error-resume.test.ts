import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { startFaultProxy, type FaultProxy } from "../../src/testing/fault-proxy.js";
import { runCli } from "../helpers/cli.js";
import { startLlamaServer, type RunningLlamaServer } from "../helpers/llama-server.js";

/**
 * A judge served by a real llama-server behind our fault proxy: while the proxy answers 500 to everything, the
 * judge stage fails wholly and the run stops; once the server is healthy again, `--resume` retries exactly the
 * failed items and finishes.
 */
describe("a run stopped by failing model calls", () => {
  let server: RunningLlamaServer;
  let proxy: FaultProxy;
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-outage-"));
  beforeAll(async () => {
    server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 4, ctxSize: 8192 });
    proxy = await startFaultProxy({ upstream: server.baseUrl, seed: 1, weights: { "500": 1 } });
  }, 300_000);
  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stops with the stage, codes and first error, then finishes on --resume once the server answers", async () => {
    const config = path.join(dir, "iteralign.yaml");
    writeFileSync(
      config,
      `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 4096
    sequences: 4
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 8192
    sequences: 4
  served:
    provider: openai-compatible
    baseUrl: ${proxy.url}
    model: tiny-qwen2
    retries: 1
    # No identity probe (GET /models): the proxy's counts are the judge calls alone.
    serverIdentity: false
roles:
  target: target
  oracle: oracle
  judge: served
data:
  redTeam:
    - bundled: dangerousqa
  limit: 8
loop:
  batchSize: 4
  redTeam: { temperature: 0, maxTokens: 16, frequencyPenalty: 0.5 }
engine:
  maxThreads: 1
`,
    );
    const failed = await runCli(["run", "--config", config, "--run-id", "outage"]);
    expect(failed.code).toBe(1);
    expect(failed.err).toContain("error [STAGE_FAILED]: iteration 0, stage judge: all 4 items failed (HTTP_STATUS x4)");
    expect(failed.err).toMatch(/first error \(it0:verdict:[^)]+\): \[HTTP_STATUS\] .*answered HTTP 500: fault proxy: injected 500/);
    expect(failed.err).toContain("--resume outage");
    // Each item was tried twice (retries: 1) before it became an error row.
    expect(proxy.counts()["500"]).toBe(8);
    const verdicts = readFileSync(path.join(dir, "runs", "outage", "iterations", "000", "verdicts.jsonl"), "utf8").trim().split("\n");
    expect(verdicts.map((l) => (JSON.parse(l) as { status: string }).status)).toEqual(["error", "error", "error", "error"]);
    const store = new SqliteRunStore(path.join(dir, ".iteralign", "iteralign.db"));
    expect(store.getRun("outage")?.status).toBe("failed");
    // The red team's answers were kept: the resume must not redo them.
    expect(store.getRecord("outage", "it0:done:red-team")).toBeDefined();
    store.close();

    proxy.setWeights({ pass: 1 });
    const resumed = await runCli(["run", "--config", config, "--resume", "outage"]);
    expect(resumed.code, JSON.stringify(resumed.err)).toBe(0);
    expect(resumed.err).toContain("red-team: 4 items (from the store)");
    expect(resumed.err).toMatch(/judge: 4 items \(4 failed items retried\)/);
    const summary = JSON.parse(readFileSync(path.join(dir, "runs", "outage", "summary.json"), "utf8")) as {
      iterations: Array<{ errors: number; errorsByStage: Record<string, number> }>;
      errorsByStage: Record<string, number>;
    };
    expect(summary.iterations).toHaveLength(2);
    expect(summary.iterations[0]?.errorsByStage.judge).toBe(0);
    expect(summary.errorsByStage).toMatchObject({ "red-team": 0, judge: 0 });
    expect(resumed.err).toMatch(/errors: \d+ items? \(red-team 0, judge 0/);
    const after = readFileSync(path.join(dir, "runs", "outage", "iterations", "000", "verdicts.jsonl"), "utf8").trim().split("\n");
    expect(after.map((l) => (JSON.parse(l) as { status: string }).status)).toEqual(["ok", "ok", "ok", "ok"]);
  }, 600_000);
});
