import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkBudget } from "../../src/pipeline/cost-budget.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { callCost, loadPriceFile, priceFor } from "../../src/providers/pricing.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { startLlamaServer, type RunningLlamaServer } from "../../src/testing/llama-server.js";
import { runCli } from "../helpers/cli.js";

describe("prices", () => {
  it("costs a call from its usage: cached and cache-written prompt tokens, output, the batch discount", () => {
    const price = { input: 3, output: 15, cachedInput: 0.3, cacheWrite: 3.75, batchDiscount: 0.5 };
    expect(callCost({ promptTokens: 1_000_000, completionTokens: 0 }, price)).toBeCloseTo(3, 10);
    expect(callCost({ promptTokens: 1_000_000, completionTokens: 1_000_000, cachedPromptTokens: 500_000, cacheWritePromptTokens: 100_000 }, price)).toBeCloseTo(0.4 * 3 + 0.5 * 0.3 + 0.1 * 3.75 + 15, 10);
    expect(callCost({ promptTokens: 2_000_000, completionTokens: 0 }, price, { batch: true })).toBeCloseTo(3, 10);
  });

  it("finds a model's price: its own, then the pricing file (longest name), then the built-in list", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-prices-"));
    try {
      const file = path.join(dir, "prices.yaml");
      writeFileSync(file, "models:\n  gpt-4o: { input: 1, output: 2 }\n  gpt-4o-mini: { input: 0.1, output: 0.2 }\n");
      const table = loadPriceFile(file);
      expect(priceFor("gpt-4o-mini-2024-07-18", { table })).toEqual({ price: { input: 0.1, output: 0.2 }, source: "pricing file" });
      expect(priceFor("gpt-4o-2024-08-06", { table })?.price.input).toBe(1);
      expect(priceFor("claude-sonnet-4-5-20250929")?.source).toBe("built-in list prices (2025-11)");
      expect(priceFor("my-local-model")).toBeUndefined();
      expect(priceFor("gpt-4o", { own: { input: 9, output: 9 }, table })?.source).toBe("config");
      writeFileSync(file, "models:\n  x: { input: -1, output: 2 }\n");
      expect(() => loadPriceFile(file)).toThrow(/pricing file .*prices\.yaml: models\.x\.input/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops before a stage whose estimated cost would pass the budget", () => {
    const base = { budget: 1, stage: "judge", iteration: 1, items: 10 };
    expect(checkBudget({ ...base, spent: 0.5, perItem: 0.04 }).stop).toBeUndefined();
    const stop = checkBudget({ ...base, spent: 0.5, perItem: 0.06 }).stop;
    expect(stop?.code).toBe("BUDGET_EXCEEDED");
    expect(stop?.message).toMatch(/\$0\.5000 spent, and stage judge of iteration 1 \(10 items at ~\$0\.06000 each\) would cost ~\$0\.6000, past the \$1 budget/);
    expect(checkBudget({ ...base, spent: 1, perItem: undefined }).stop?.message).toMatch(/\$1\.0000 spent of the \$1 budget/);
    expect(checkBudget({ ...base, spent: 0.9, perItem: undefined }).stop).toBeUndefined();
  });
});

describe("a run's cost, and loop.costBudget", () => {
  let server: RunningLlamaServer;
  const parent = mkdtempSync(path.join(tmpdir(), "iteralign-cost-"));
  beforeAll(async () => {
    server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 4, ctxSize: 8192 });
  }, 300_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(parent, { recursive: true, force: true });
  });

  /** A 2-iteration loop whose judge and oracle are a served model priced by a pricing file. */
  function setup(name: string, loop = ""): { dir: string; config: string } {
    const dir = path.join(parent, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "prices.yaml"), "models:\n  tiny-judge: { input: 1000, output: 4000 }\n");
    const config = path.join(dir, "iteralign.yaml");
    writeFileSync(
      config,
      `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 4096
    sequences: 4
  judge:
    provider: openai-compatible
    baseUrl: ${server.baseUrl}
    model: tiny-judge
roles:
  target: target
  oracle: judge
data:
  redTeam:
    - bundled: dangerousqa
  limit: 8
loop:
  batchSize: 4
  redTeam: { temperature: 0, maxTokens: 16, frequencyPenalty: 0.5 }
${loop}
pricing:
  file: prices.yaml
engine:
  maxThreads: 1
`,
    );
    return { dir, config };
  }

  interface Summary {
    costUsd: number;
    costByStage: Record<string, number>;
    iterations: Array<{ costUsd: number; costByStage: Record<string, number> }>;
  }
  const summary = (dir: string, id: string): Summary => JSON.parse(readFileSync(path.join(dir, "runs", id, "summary.json"), "utf8")) as Summary;

  it("prints and stores each stage's cost; the budget stops the run before the stage that would pass it, and --resume with a larger one finishes it", async () => {
    const whole = setup("whole");
    const run = await runCli(["run", "--config", whole.config, "--run-id", "priced"]);
    expect(run.code, run.err).toBe(0);
    expect(run.err).toMatch(/ {2}judge: 4 items in [\d.]+ s, \d+ tokens, \$\d+\.\d{4}/);
    expect(run.out).toMatch(/at the models' prices/);
    const s = summary(whole.dir, "priced");
    expect(s.iterations).toHaveLength(2);
    expect(s.costByStage.judge).toBeGreaterThan(0);
    expect(s.costByStage["red-team"]).toBe(0);
    const sum = s.iterations.reduce((n, m) => n + m.costUsd, 0);
    expect(s.costUsd).toBeCloseTo(sum, 5);
    const metrics = JSON.parse(readFileSync(path.join(whole.dir, "runs", "priced", "iterations", "000", "metrics.json"), "utf8")) as { costByStage: Record<string, number> };
    expect(metrics.costByStage).toEqual(s.iterations[0]?.costByStage);
    const store = new SqliteRunStore(path.join(whole.dir, ".iteralign", "iteralign.db"));
    const paid = store.callStats({ runId: "priced" }).total.costUsd;
    store.close();
    expect(paid).toBeCloseTo(s.costUsd, 4);

    // A budget that holds iteration 0 but not iteration 1's judge stage.
    const first = s.iterations[0]?.costUsd ?? 0;
    const budget = first + 0.5 * (s.iterations[0]?.costByStage.judge ?? 0);
    const limited = setup("limited", `  costBudget: ${budget}`);
    const stopped = await runCli(["run", "--config", limited.config, "--run-id", "budget"]);
    expect(stopped.code).toBe(1);
    expect(stopped.err).toMatch(/stopped: cost budget: \$[\d.]+ spent, and stage judge of iteration 1 \(4 items at ~\$[\d.]+ each\) would cost ~\$[\d.]+, past the \$[\d.]+ budget; stopped before the stage/);
    expect(stopped.err).toContain("--resume budget --cost-budget <dollars>");
    const stopStore = new SqliteRunStore(path.join(limited.dir, ".iteralign", "iteralign.db"));
    expect(stopStore.getRun("budget")?.status).toBe("interrupted");
    expect(stopStore.getRecord("budget", "it1:done:red-team")).toBeDefined();
    expect(stopStore.getRecord("budget", "it1:done:judge")).toBeUndefined();
    stopStore.close();

    const resumed = await runCli(["run", "--config", limited.config, "--resume", "budget", "--cost-budget", "1000"]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(summary(limited.dir, "budget").iterations).toHaveLength(2);
  }, 600_000);
});
