import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runLoop } from "../../src/pipeline/run-loop.js";
import { errorRateExceeded, errorsByStage, stageFailure, stopReason, tallyStage } from "../../src/pipeline/stop-rules.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { StageItem } from "../../src/stages/stage-item.js";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { caught } from "../helpers/errors.js";
import { scriptedLoopConfig, scriptedLoopModels } from "../helpers/scripted-loop.js";

const ok = (id: string): StageItem<{ id: string }> => ({ status: "ok", record: { id } });
const bad = (id: string, code = "HTTP_STATUS", message = "boom"): StageItem<{ id: string }> => ({
  status: "error",
  id,
  parentIds: [],
  error: { code: code as "HTTP_STATUS", message },
});

describe("stop rules (pure)", () => {
  it("tallies a stage's items, errors by code and the first error", () => {
    expect(tallyStage("judge", [ok("a"), bad("b", "TIMEOUT", "slow"), bad("c"), bad("d")])).toEqual({
      stage: "judge",
      items: 4,
      errors: 3,
      byCode: { TIMEOUT: 1, HTTP_STATUS: 2 },
      firstError: { id: "b", code: "TIMEOUT", message: "slow" },
    });
    expect(tallyStage("judge", [])).toEqual({ stage: "judge", items: 0, errors: 0, byCode: {} });
  });

  it("stops on a stage whose every item failed, naming the stage, codes, counts and first error", () => {
    expect(stageFailure(0, tallyStage("judge", [ok("a"), bad("b")]))).toBeUndefined();
    expect(stageFailure(0, tallyStage("judge", []))).toBeUndefined();
    const failure = stageFailure(1, tallyStage("propose", [bad("it1:proposal:x", "OUTPUT_INVALID", "not JSON")]));
    expect(failure?.code).toBe("STAGE_FAILED");
    expect(failure?.message).toBe("iteration 1, stage propose: all 1 items failed (OUTPUT_INVALID x1); first error (it1:proposal:x): [OUTPUT_INVALID] not JSON");
  });

  it("measures the error rate over the items the stages attempted", () => {
    const tallies = [tallyStage("red-team", [ok("1"), ok("2"), ok("3"), ok("4")]), tallyStage("judge", [ok("1"), bad("2"), bad("3"), ok("4")])];
    // 2 of 8: at the limit is fine, past it stops.
    expect(errorRateExceeded(0, tallies, 0.25)).toBeUndefined();
    const failure = errorRateExceeded(0, tallies, 0.2);
    expect(failure?.code).toBe("ERROR_RATE_EXCEEDED");
    expect(failure?.message).toBe(
      "iteration 0: 2 of 8 items failed (0.250), more than loop.maxErrorRate (0.2): judge 2/4 (HTTP_STATUS x2); first error (2): [HTTP_STATUS] boom",
    );
    expect(errorRateExceeded(0, [], 0)).toBeUndefined();
  });

  it("decides the stop reason in a fixed order", () => {
    const state = { iterationsDone: 2, cleanBatches: 0, tokensUsed: 10, remainingPrompts: 5 };
    expect(stopReason(state, {})).toBeUndefined();
    expect(stopReason(state, { maxIterations: 2 })).toBe("reached loop.maxIterations (2)");
    expect(stopReason(state, { maxIterations: 3 })).toBeUndefined();
    expect(stopReason({ ...state, remainingPrompts: 0 }, { maxIterations: 2 })).toBe("train split exhausted");
    expect(stopReason({ ...state, cleanBatches: 2 }, { stopAfterCleanBatches: 2, maxIterations: 2 })).toBe("2 consecutive batches without failures");
    expect(stopReason({ ...state, tokensUsed: 51 }, { tokenBudget: 50, maxIterations: 2 })).toBe("token budget of 50 spent");
    expect(stopReason({ ...state, tokensUsed: 50 }, { tokenBudget: 50 })).toBeUndefined();
  });

  it("sums errors per stage over iterations", () => {
    expect(errorsByStage([{ "red-team": 0, judge: 2 }, { "red-team": 1, judge: 0, gate: 3 }])).toEqual({ "red-team": 1, judge: 2, gate: 3 });
  });
});

interface Summary {
  stopReason: string;
  iterations: Array<{ failures: number; skipped: boolean; errors: number; errorsByStage: Record<string, number> }>;
  errorsByStage: Record<string, number>;
}

describe("runLoop with injected models and store", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const setup = (): { dir: string; store: MemoryRunStore } => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-rules-"));
    dirs.push(dir);
    return { dir, store: new MemoryRunStore() };
  };
  const summary = (dir: string, runId: string): Summary => JSON.parse(readFileSync(path.join(dir, "runs", runId, "summary.json"), "utf8")) as Summary;

  it("stops at loop.maxIterations", async () => {
    const { dir, store } = setup();
    const result = await runLoop({ loaded: scriptedLoopConfig(dir, { maxIterations: 1 }), runId: "max", store, models: ({ store: s, runId }) => scriptedLoopModels(s, runId) });
    expect(result.stopReason).toBe("reached loop.maxIterations (1)");
    expect(summary(dir, "max").iterations).toHaveLength(1);
    expect(store.getRun("max")?.status).toBe("finished");
  });

  it("records and skips all-pass batches, and stops after K of them in a row", async () => {
    const { dir, store } = setup();
    const models = scriptedLoopModels(store, "clean", { pass: () => true });
    const result = await runLoop({ loaded: scriptedLoopConfig(dir, { stopAfterCleanBatches: 2 }), runId: "clean", store, models: () => models });
    expect(result.stopReason).toBe("2 consecutive batches without failures");
    expect(summary(dir, "clean").iterations.map((m) => [m.failures, m.skipped])).toEqual([
      [0, true],
      [0, true],
    ]);
    // Nothing was proposed or revised: the oracle only judged.
    expect(models.raw.oracle.log.filter((c) => c.kind === "generateObject" && c.request.schemaName === "constitutions")).toHaveLength(0);
  });

  it("stops once the token budget is spent", async () => {
    const { dir, store } = setup();
    const result = await runLoop({ loaded: scriptedLoopConfig(dir, { tokenBudget: 30 }), runId: "budget", store, models: ({ store: s, runId }) => scriptedLoopModels(s, runId) });
    expect(result.stopReason).toBe("token budget of 30 spent");
    expect(result.iterations).toHaveLength(1);
  });

  it("stops past loop.maxErrorRate before building on the failed stage, and --resume retries only the failed items", async () => {
    const { dir, store } = setup();
    let outage = true;
    let failedCalls = 0;
    const models = scriptedLoopModels(store, "errors", {
      // During the outage the first judge call fails; every other verdict is a failure of the answer.
      pass: (_request, gate) => (outage && !gate && failedCalls++ === 0 ? new IterAlignError("HTTP_STATUS", "judge down", { retryable: true }) : false),
    });
    const loaded = scriptedLoopConfig(dir, { maxErrorRate: 0.1 }, { limit: 4 });
    const failure = await caught(runLoop({ loaded, runId: "errors", store, models: () => models }));
    expect(failure).toBeInstanceOf(IterAlignError);
    expect((failure).code).toBe("ERROR_RATE_EXCEEDED");
    expect((failure).message).toMatch(/^iteration 0: 1 of 4 items failed \(0\.250\), more than loop\.maxErrorRate \(0\.1\): judge 1\/2 \(HTTP_STATUS x1\)/);
    expect(store.getRun("errors")?.status).toBe("failed");
    // No stage after the judge ran: nothing was built on the failed verdicts.
    expect(store.getRecord("errors", "it0:done:judge")).toBeDefined();
    expect(store.getRecord("errors", "it0:done:propose")).toBeUndefined();
    const judged = models.raw.oracle.calls.generateObject;
    const targetCalls = models.raw.target.calls.generate;

    outage = false;
    const result = await runLoop({ resume: { runId: "errors" }, store, models: () => models });
    expect(result.iterations).toHaveLength(2);
    expect(result.errorsByStage).toMatchObject({ "red-team": 0, judge: 0 });
    // The red team was not redone, and the judge was asked again only about the failed items.
    const redTeamAgain = models.raw.target.log.slice(targetCalls).filter((c) => c.kind === "generate" && !c.request.messages.some((m) => m.content.includes("Constitutions:")));
    expect(redTeamAgain).toHaveLength(2); // iteration 1's red team only
    // One retried verdict of iteration 0, then iteration 1's two.
    const verdictsAgain = models.raw.oracle.log.slice(judged).filter((c) => c.kind === "generateObject" && c.request.schemaName === "verdict");
    expect(verdictsAgain).toHaveLength(3);
    expect(store.getRun("errors")?.status).toBe("finished");
  });
});
