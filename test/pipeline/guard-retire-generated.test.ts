import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { runCli } from "../helpers/cli.js";

/**
 * The judge panel with a guard classifier, per-principle efficacy and retirement, on the generated models (real
 * engine, random weights): the guard (a generated GGUF with a guard-style chat template) decides by P(unsafe), the
 * oracle is asked only where it is unsure, every principle's leave-one-out trials are run and the retirement rule
 * is applied to their figures. Random weights decide what the numbers are; the test checks that they are
 * consistent: with each other, with the rule, and with what later prompts contain.
 */
const dir = mkdtempSync(path.join(tmpdir(), "iteralign-guard-retire-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RETIRE = { minUses: 1, minEfficacy: 0.5, maxOverRefusal: 0.5 };

interface Figures {
  uses: number;
  accepted: number;
  trials: number;
  fixes: number;
  overRefusals: number;
}

describe("guard judge, efficacy and retirement on the generated models", () => {
  it("runs two iterations; the guard's verdicts, the efficacy figures and the retired principles agree with the rules", async () => {
    const config = path.join(dir, "iteralign.yaml");
    writeFileSync(
      config,
      `models:
  target: { provider: llama-cpp, model: ${fixtureModelPath("tiny-qwen2")}, contextSize: 1024, sequences: 4 }
  oracle: { provider: llama-cpp, model: ${fixtureModelPath("tiny-llama")}, contextSize: 8192, sequences: 4 }
  guard:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-guard")}
    contextSize: 2048
    sequences: 4
    guard: { style: llama-guard, threshold: 0.01 }
roles: { target: target, oracle: oracle, judges: [guard, oracle] }
data: { redTeam: [{ bundled: dangerousqa }], limit: 8 }
loop:
  batchSize: 4
  maxIterations: 2
  judgeRule: cascade
  redTeam: { temperature: 0, maxTokens: 24, frequencyPenalty: 0.5 }
  efficacy: { samples: 2 }
  retire: ${JSON.stringify(RETIRE)}
engine: { maxThreads: 1 }
`,
    );
    const r = await runCli(["run", "--config", config, "--run-id", "g", "--quiet"]);
    expect(r.code, r.err).toBe(0);
    const iterations = path.join(dir, "runs", "g", "iterations");
    const read = (it: string, file: string): string => readFileSync(path.join(iterations, it, file), "utf8");
    const retiredBefore = new Set<string>();
    let retiredTotal = 0;
    for (const it of ["000", "001"]) {
      // Every verdict was asked of the guard first; its rationale carries the probability it decided by, and the
      // oracle was asked exactly where the guard was unsure (severity low).
      const verdicts = read(it, "verdicts.jsonl").trim().split("\n").map((l) => (JSON.parse(l) as { record: { judges: Array<{ model: string; severity: string | null }>; verdict: { rationale: string }; promptBenign: null | boolean } }).record);
      expect(verdicts).toHaveLength(4);
      for (const v of verdicts) {
        expect(v.judges[0]?.model).toBe(fixtureModelPath("tiny-guard"));
        expect(v.judges.length).toBe(v.judges[0]?.severity === "low" ? 2 : 1);
        if (v.judges.length === 1) {
          expect(v.verdict.rationale).toMatch(/llama-guard: .*P\(unsafe\) = \d\.\d{3}, threshold 0\.01/);
          expect(v.promptBenign).toBeNull();
        }
      }
      // Retired principles of earlier iterations reach no revision prompt of this one.
      const revisions = read(it, "revisions.jsonl").trim().split("\n").map((l) => (JSON.parse(l) as { record: { principleIds: string[] } }).record);
      for (const rev of revisions) for (const id of rev.principleIds) expect(retiredBefore.has(id)).toBe(false);

      const efficacy = JSON.parse(read(it, "efficacy.json")) as { cumulative: Record<string, Figures>; perPrinciple: Record<string, Figures>; retired: Array<{ id: string; reason: string }> };
      const trials = read(it, "efficacy-trials.jsonl").trim().split("\n").filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { record: { principleId: string; withPrinciple: { accepted: boolean; reason: string | null }; without: { accepted: boolean } } }).record);
      // Per principle, this iteration's trials are counted exactly: a fix is accepted with it and not without it;
      // an over-refusal is rejected as such with it.
      for (const [id, f] of Object.entries(efficacy.perPrinciple)) {
        const mine = trials.filter((t) => t.principleId === id);
        expect(f.trials).toBe(mine.length);
        expect(f.fixes).toBe(mine.filter((t) => t.withPrinciple.accepted && !t.without.accepted).length);
        expect(f.overRefusals).toBe(mine.filter((t) => t.withPrinciple.reason === "over-refusal").length);
        expect(f.uses).toBeGreaterThanOrEqual(f.trials);
      }
      // The rule: retired exactly when used often enough and fixing too little or refusing too much.
      const breaks = (f: Figures): boolean => f.uses >= RETIRE.minUses && f.trials > 0 && (f.fixes / f.trials < RETIRE.minEfficacy || f.overRefusals / f.trials > RETIRE.maxOverRefusal);
      const constitution = JSON.parse(read(it, "constitution.json")) as { principles: Array<{ id: string; status: string }> };
      for (const { id } of efficacy.retired) {
        expect(breaks(efficacy.cumulative[id] as Figures)).toBe(true);
        expect(constitution.principles.find((p) => p.id === id)?.status).toBe("retired");
        retiredBefore.add(id);
      }
      for (const p of constitution.principles.filter((x) => x.status === "active")) {
        const f = efficacy.cumulative[p.id];
        if (f) expect(breaks(f)).toBe(false);
      }
      const metrics = JSON.parse(read(it, "metrics.json")) as { principlesRetired: number };
      expect(metrics.principlesRetired).toBe(efficacy.retired.length);
      retiredTotal += efficacy.retired.length;
    }
    // With random weights nothing is fixed, so the principles the run proposed were retired.
    expect(retiredTotal).toBeGreaterThan(0);
  }, 600_000);
});
