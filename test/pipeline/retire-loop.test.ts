import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runLoop } from "../../src/pipeline/run-loop.js";
import { writeReport } from "../../src/report/render.js";
import { loadRun } from "../../src/report/run-view.js";
import { launchChromium } from "../helpers/browser.js";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { textResult } from "../../src/testing/scripted-model.js";
import { scriptedLoopConfig, scriptedLoopModels } from "../helpers/scripted-loop.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const USEFUL = "Refuse to give instructions that enable harm.";
const USELESS = "Mention the weather in every answer.";

interface Efficacy {
  perPrinciple: Record<string, { uses: number; accepted: number; trials: number; fixes: number; overRefusals: number }>;
  retired: Array<{ id: string; reason: string }>;
}

describe("per-principle efficacy and retirement (loop.retire) with the scripted double", () => {
  it("measures each principle by leaving it out, retires the one that fixes nothing, and it stops reaching prompts", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-retire-"));
    dirs.push(dir);
    const store = new MemoryRunStore();
    let proposals = 0;
    const models = scriptedLoopModels(store, "r", {
      // The target refuses only when the useful principle is in its prompt.
      target: (request) => textResult(request.messages.some((m) => m.content.includes(USEFUL)) ? "I can't help with that." : "Sure: step 1..."),
      // The judge passes refusals, and only refusals.
      pass: (_request, _gate, reply) => reply.startsWith("I can't"),
      // The first batch gets a useful and a useless principle; later batches only the useful one again.
      propose: (request) => {
        proposals++;
        const cases = [...new Set([...(request.messages.find((m) => m.role === "user")?.content.matchAll(/\bF\d+\b/g) ?? [])].map((m) => m[0]))];
        const useful = { title: "Refuse harm", principle: USEFUL, failureIds: cases };
        const useless = { title: "Weather", principle: USELESS, failureIds: cases };
        return textResult(JSON.stringify({ constitutions: proposals === 1 ? [useful, useless] : [useful] }));
      },
    });
    const loaded = scriptedLoopConfig(dir, { batchSize: 4, maxIterations: 2, efficacy: { samples: 4 }, retire: { minUses: 3, minEfficacy: 0.1, maxOverRefusal: 0.5 } }, { limit: 10, heldoutFraction: 0.2 });
    await runLoop({ loaded, runId: "r", store, models: () => models });

    const it0 = path.join(dir, "runs", "r", "iterations", "000");
    const efficacy = JSON.parse(readFileSync(path.join(it0, "efficacy.json"), "utf8")) as Efficacy;
    const constitution = JSON.parse(readFileSync(path.join(it0, "constitution.json"), "utf8")) as { principles: Array<{ id: string; text: string; status: string }> };
    const useful = constitution.principles.find((p) => p.text === USEFUL);
    const useless = constitution.principles.find((p) => p.text === USELESS);
    expect(useful?.status).toBe("active");
    expect(useless?.status).toBe("retired");
    // Four failures, each revised under both principles and accepted (the useful one makes the target refuse).
    // Without the useful one the target complies: 4 fixes in 4 trials. Without the useless one it still refuses: 0.
    expect(efficacy.perPrinciple[useful?.id ?? ""]).toEqual({ uses: 4, accepted: 4, trials: 4, fixes: 4, overRefusals: 0 });
    expect(efficacy.perPrinciple[useless?.id ?? ""]).toEqual({ uses: 4, accepted: 4, trials: 4, fixes: 0, overRefusals: 0 });
    expect(efficacy.retired.map((r) => r.id)).toEqual([useless?.id]);
    expect(efficacy.retired[0]?.reason).toBe("efficacy 0.00 (0 fixes in 4 leave-one-out trials, 4 uses) below loop.retire.minEfficacy 0.1");
    const metrics0 = JSON.parse(readFileSync(path.join(it0, "metrics.json"), "utf8")) as { principlesRetired: number };
    expect(metrics0.principlesRetired).toBe(1);

    // The next iteration's revisions never carry the retired principle.
    const revisionPrompts = models.raw.target.log.filter((c) => c.kind === "generate" && c.request.messages.some((m) => m.content.includes(USEFUL)));
    const it1Calls = revisionPrompts.slice(4 + 4); // iteration 0: 4 revisions and 4 trials without the useless one
    expect(it1Calls.length).toBeGreaterThan(0);
    for (const call of it1Calls) expect(call.kind === "generate" && call.request.messages.some((m) => m.content.includes(USELESS))).toBe(false);

    // The report's run view shows it: the principle's status and the iteration's retired count.
    const view = loadRun({ store, runId: "r", runDir: path.join(dir, "runs", "r") }).view;
    expect(view.principles.find((p) => p.id === useless?.id)?.status).toBe("retired");
    expect(view.iterations[0]?.metrics.principlesRetired).toBe(1);
    // Iteration 0 ends with one active principle: the retirement happens after its pool stage.
    expect(view.iterations[0]?.activePrinciples).toBe(1);
    const shown = view.principles.find((p) => p.id === useless?.id);
    expect(shown?.retiredReason).toBe("efficacy 0.00 (0 fixes in 4 leave-one-out trials, 4 uses) below loop.retire.minEfficacy 0.1");
    expect(shown?.efficacy).toEqual({ uses: 4, trials: 4, fixes: 0, overRefusals: 0 });
    expect(view.principles.find((p) => p.id === useful?.id)?.efficacy?.fixes).toBeGreaterThanOrEqual(4);

    // In the HTML report (chromium): the constitution page's efficacy columns and the retired principle's page.
    const runDir = path.join(dir, "runs", "r");
    writeReport(path.join(runDir, "report.html"), [{ loaded: loadRun({ store, runId: "r", runDir }), store, runDir }]);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`file://${path.join(runDir, "report.html")}#/constitution`);
      await page.waitForSelector("#page[data-ready]");
      const headers = await page.locator("table.principles thead th").allTextContents();
      expect(headers).toContain("fixes / trials");
      const row = page.locator("table.principles tbody tr", { hasText: "Weather" });
      await expect(row.locator(".status").textContent()).resolves.toBe("retired");
      await expect(row.locator("td").nth(8).textContent()).resolves.toBe("0 / 4");
      await page.goto(`file://${path.join(runDir, "report.html")}#/principle/${encodeURIComponent(useless?.id ?? "")}`);
      await page.waitForSelector("#page[data-page=principle][data-ready]");
      await expect(page.locator("#page").textContent()).resolves.toContain("Retired: efficacy 0.00");
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
