import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runLoop } from "../../src/pipeline/run-loop.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { GenerateObjectRequest, LanguageModel } from "../../src/spec/language-model.js";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { GuardConfigSchema } from "../../src/spec/guard.js";
import { ScriptedModel, textResult } from "../../src/testing/scripted-model.js";
import { judgedRequest, scriptedLoopConfig, scriptedLoopModels } from "../helpers/scripted-loop.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Call = "pass" | "fail" | "unsure-pass" | "error";

/** A panel judge answering each of the prompts p1..p4 as scripted. */
function panelJudge(name: string, calls: Record<string, Call>): ScriptedModel {
  return new ScriptedModel({
    modelId: name,
    generateObject: [
      (request: GenerateObjectRequest<unknown>) => {
        const key = /prompt (p\d)/.exec(judgedRequest(request))?.[1] ?? "";
        const call = calls[key];
        if (call === "error" || call === undefined) throw new IterAlignError("TIMEOUT", `${name} timed out`);
        const pass = call !== "fail";
        return textResult(
          JSON.stringify({ pass, violated: pass ? [] : ["harmless"], severity: call === "unsure-pass" ? "low" : pass ? "none" : "high", rationale: `${name} on ${key}`, promptBenign: false }),
        );
      },
    ],
  });
}

const A = { p1: "fail", p2: "fail", p3: "fail", p4: "pass" } as const;
const B = { p1: "fail", p2: "fail", p3: "pass", p4: "pass" } as const;
const C = { p1: "fail", p2: "pass", p3: "pass", p4: "error" } as const;

interface VerdictLine {
  record: { subjectId: string; verdict: { pass: boolean; severity: string }; judges: Array<{ model: string; pass: boolean | null; error?: string }> };
}

async function run(rule: "all" | "majority" | "cascade", judges: Record<string, ScriptedModel>, order: string[]): Promise<{ dir: string; verdicts: Map<string, VerdictLine["record"]> }> {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-panel-"));
  dirs.push(dir);
  writeFileSync(path.join(dir, "red.jsonl"), ["p1", "p2", "p3", "p4"].map((p) => JSON.stringify({ id: p, text: `prompt ${p}` })).join("\n"));
  const store = new MemoryRunStore();
  const base = scriptedLoopModels(store, "panel");
  const models = { ...base, byName: async (name: string): Promise<LanguageModel> => judges[name] as LanguageModel };
  const loaded = scriptedLoopConfig(
    dir,
    { batchSize: 4, maxIterations: 1, judgeRule: rule },
    { redTeam: [{ file: "red.jsonl", promptField: "text", idField: "id" }], heldoutFraction: 0, limit: 4 },
    { models: { target: { provider: "llama-cpp", model: "unused.gguf" }, oracle: { provider: "llama-cpp", model: "unused.gguf" }, ...Object.fromEntries(order.map((n) => [n, { provider: "llama-cpp", model: "unused.gguf" }])) }, roles: { target: "target", oracle: "oracle", judges: order } },
  );
  await runLoop({ loaded, runId: "panel", store, models: () => models });
  const lines = readFileSync(path.join(dir, "runs", "panel", "iterations", "000", "verdicts.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as VerdictLine);
  return { dir, verdicts: new Map(lines.map((l) => [/red:(p\d)/.exec(l.record.subjectId)?.[1] ?? "", l.record])) };
}

describe("several judges (roles.judges)", () => {
  it("majority: more than half of the judges that answered; kappa per pair and the disagreements in metrics", async () => {
    const { dir, verdicts } = await run("majority", { a: panelJudge("a", A), b: panelJudge("b", B), c: panelJudge("c", C) }, ["a", "b", "c"]);
    expect(["p1", "p2", "p3", "p4"].map((p) => verdicts.get(p)?.verdict.pass)).toEqual([false, false, true, true]);
    expect(verdicts.get("p4")?.judges).toEqual([
      { model: "a", pass: true, severity: "none" },
      { model: "b", pass: true, severity: "none" },
      { model: "c", pass: null, severity: null, error: "[TIMEOUT] c timed out" },
    ]);
    const metrics = JSON.parse(readFileSync(path.join(dir, "runs", "panel", "iterations", "000", "metrics.json"), "utf8")) as {
      judgeAgreement: { pairs: Array<{ a: string; b: string; n: number; agreement: number; kappa: number }>; disagreements: number };
    };
    const pair = (a: string, b: string) => metrics.judgeAgreement.pairs.find((p) => p.a === a && p.b === b);
    // a-b on p1..p4: FF FF FP PP -> 3/4 agree; chance 1/4*1/2 + 3/4*1/2 = 1/2; kappa 1/2.
    expect(pair("a", "b")).toMatchObject({ n: 4 });
    expect(pair("a", "b")?.agreement).toBeCloseTo(0.75, 12);
    expect(pair("a", "b")?.kappa).toBeCloseTo(0.5, 12);
    // a-c on p1..p3 (c failed on p4): FF FP FP -> 1/3; chance 0*2/3 + 1*1/3 = 1/3; kappa 0.
    expect(pair("a", "c")).toMatchObject({ n: 3 });
    expect(pair("a", "c")?.kappa).toBeCloseTo(0, 12);
    // b-c on p1..p3: FF FP PP -> 2/3; chance 1/3*2/3 + 2/3*1/3 = 4/9; kappa (2/3 - 4/9) / (5/9) = 0.4.
    expect(pair("b", "c")?.kappa).toBeCloseTo(0.4, 12);
    expect(metrics.judgeAgreement.disagreements).toBe(2);
    const disagreements = readFileSync(path.join(dir, "runs", "panel", "iterations", "000", "judge-disagreements.jsonl"), "utf8").trim().split("\n");
    expect(disagreements.map((l) => /red:(p\d)/.exec(l)?.[1])).toEqual(["p2", "p3"]);
  });

  it("all: an answer passes only when every judge that answered passes it", async () => {
    const { verdicts } = await run("all", { a: panelJudge("a", A), b: panelJudge("b", B), c: panelJudge("c", C) }, ["a", "b", "c"]);
    expect(["p1", "p2", "p3", "p4"].map((p) => verdicts.get(p)?.verdict.pass)).toEqual([false, false, false, true]);
  });

  it("cascade: the cheap judge decides what it is sure of; only unsure or failed cases reach the next judge", async () => {
    const cheap = panelJudge("cheap", { p1: "fail", p2: "pass", p3: "unsure-pass", p4: "error" });
    const oracle = panelJudge("big", A);
    const { verdicts } = await run("cascade", { cheap, big: oracle }, ["cheap", "big"]);
    expect(["p1", "p2", "p3", "p4"].map((p) => verdicts.get(p)?.verdict.pass)).toEqual([false, true, false, true]);
    // The big judge saw only p3 (unsure) and p4 (the cheap one failed).
    expect(oracle.calls.generateObject).toBe(2);
    expect(verdicts.get("p2")?.judges).toEqual([{ model: "cheap", pass: true, severity: "none" }]);
    expect(verdicts.get("p3")?.judges.map((j) => [j.model, j.pass])).toEqual([
      ["cheap", true],
      ["big", false],
    ]);
  });

  it("refuses a guard judge its provider cannot run, before any model call", async () => {
    // A guard of style llama-guard needs a provider that renders the conversation with the model's template.
    const guard = new ScriptedModel({ modelId: "g", guard: GuardConfigSchema.parse({ style: "llama-guard" }), generate: [textResult("safe")] });
    await expect(run("cascade", { g: guard, big: panelJudge("big", A) }, ["g", "big"])).rejects.toThrow(/roles\.judges\[0\] \(g\): a guard of style llama-guard/);
    expect(guard.calls.generate).toBe(0);
  });
});
