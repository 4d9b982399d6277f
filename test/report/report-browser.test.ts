import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { launchChromium } from "../helpers/browser.js";
import { runCli } from "../helpers/cli.js";

const root = path.resolve(import.meta.dirname, "../..");
/** Screenshots for people to look at (git-ignored); the closing notes name them. */
export const SHOTS = path.join(root, "test", ".artifacts", "screenshots");

let browser: Browser;
let reportUrl: string;
let compareUrl: string;
let dir: string;

/** A page that fails the test on any script error, console error or CSP violation. */
async function open(url: string, width: number): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  await page.addInitScript({ content: 'document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI));' });
  await page.goto(url);
  await page.waitForSelector("#page[data-ready]");
  return { page, problems };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "iteralign-report-browser-"));
  const config = path.join(dir, "iteralign.yaml");
  writeFileSync(
    config,
    `models:
  target: { provider: llama-cpp, model: ${fixtureModelPath("tiny-llama")}, contextSize: 1024, sequences: 4 }
  oracle: { provider: llama-cpp, model: ${fixtureModelPath("tiny-qwen2")}, contextSize: 8192, sequences: 4 }
roles: { target: target, oracle: oracle }
data: { redTeam: [{ bundled: dangerousqa }], limit: 10 }
loop: { batchSize: 4, maxIterations: 2, redTeam: { temperature: 0, maxTokens: 12, frequencyPenalty: 0.5 } }
eval: { benchmarks: "truthfulqa,asr", limit: 3, when: every-iteration }
engine: { maxThreads: 2 }
`,
  );
  const run = await runCli(["run", "--config", config, "--run-id", "two", "--quiet"]);
  if (run.code !== 0) throw new Error(run.err);
  const report = await runCli(["report", "two", "--config", config, "--quiet"]);
  if (report.code !== 0) throw new Error(report.err);
  reportUrl = `file://${path.join(dir, "runs", "two", "report.html")}`;
  // A second run of one iteration (its calls answered from the cache) to compare with.
  const oneConfig = path.join(dir, "one.yaml");
  writeFileSync(oneConfig, readFileSync(config, "utf8").replace("maxIterations: 2", "maxIterations: 1"));
  const one = await runCli(["run", "--config", oneConfig, "--run-id", "one", "--quiet"]);
  if (one.code !== 0) throw new Error(one.err);
  const compare = await runCli(["report", "two", "one", "--config", config, "--quiet"]);
  if (compare.code !== 0) throw new Error(compare.err);
  compareUrl = `file://${path.join(dir, "runs", "two", "compare-one.html")}`;
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
}, 600_000);

afterAll(async () => {
  await browser?.close();
});

describe("the report of a real 2-iteration run, in chromium", () => {
  it("shows the overview, and every chart has its data points", async () => {
    const { page, problems } = await open(`${reportUrl}#/overview`, 1280);
    await expect(page.locator("h1 .run-id").textContent()).resolves.toBe("two");
    await expect(page.locator(".card").count()).resolves.toBeGreaterThan(8);
    await expect(page.locator("table.stages tbody tr").count()).resolves.toBeGreaterThanOrEqual(5);
    await page.screenshot({ path: path.join(SHOTS, "report-overview-1280.png"), fullPage: true });

    await page.click("nav.tabs >> text=Iterations");
    await page.waitForSelector("[data-chart=failure-rate] canvas");
    for (const chart of ["failure-rate", "gate", "gate-pass-rate", "principles"]) {
      const fig = page.locator(`figure[data-chart="${chart}"]`);
      expect(Number(await fig.getAttribute("data-points")), chart).toBeGreaterThanOrEqual(2);
      // One row of numbers per iteration, and a drawn canvas.
      await expect(fig.locator("table.chart-data tbody tr").count()).resolves.toBe(2);
      await expect(fig.locator("canvas").count()).resolves.toBeGreaterThan(0);
    }
    const failureRates = await Promise.all((await page.locator('figure[data-chart="failure-rate"] table.chart-data tbody tr td:first-of-type').all()).map((td) => td.getAttribute("data-value")));
    expect(failureRates.every((v) => v !== "" && Number(v) >= 0 && Number(v) <= 1), JSON.stringify(failureRates)).toBe(true);
    await page.screenshot({ path: path.join(SHOTS, "report-iterations-1280.png"), fullPage: true });

    await page.click("nav.tabs >> text=Evaluation");
    await page.waitForSelector("figure.chart canvas");
    const evalCharts = page.locator("figure.chart");
    expect(await evalCharts.count()).toBeGreaterThanOrEqual(3);
    for (const fig of await evalCharts.all()) {
      // base, iter-000, iter-001: three evaluations, each a point.
      expect(Number(await fig.getAttribute("data-points"))).toBeGreaterThanOrEqual(3);
    }
    await expect(page.locator("table.eval-metrics tbody tr").count()).resolves.toBeGreaterThan(2);
    await page.screenshot({ path: path.join(SHOTS, "report-eval-1280.png"), fullPage: true });
    expect(problems).toEqual([]);
  }, 120_000);

  it("filters items, opens an item's trace, follows it to its principle and back", async () => {
    const { page, problems } = await open(`${reportUrl}#/items`, 1280);
    const total = Number(await page.locator("table.items").getAttribute("data-total"));
    expect(total).toBe(8);
    await page.selectOption("select[name=iteration]", "1");
    await page.waitForFunction('location.hash.includes("iteration=1")');
    await page.waitForSelector("table.items[data-total='4']");
    const iterations = await page.locator("table.items tbody tr td:nth-child(2)").allTextContents();
    expect(iterations).toEqual(["1", "1", "1", "1"]);

    // An item that was revised: its trace names the principles it was revised under.
    await page.goto(`${reportUrl}#/items?stage=gate`);
    await page.waitForSelector("table.items tbody tr");
    const promptInList = await page.locator("table.items tbody tr:first-child td:nth-child(4)").textContent();
    await page.click("table.items tbody tr:first-child td:first-child a");
    await page.waitForSelector(".trace-step");
    const sections = await page.locator(".trace-step h2").allTextContents();
    expect(sections).toEqual(expect.arrayContaining(["Prompt", "Answer", "Verdict", "Revision", "Gate", "Training example"]));
    expect((await page.locator(".trace-step:has(h2:text-is('Prompt')) .text").textContent())?.startsWith(promptInList ?? "?")).toBe(true);
    await page.screenshot({ path: path.join(SHOTS, "report-item-1280.png"), fullPage: true });
    const itemHash = await page.evaluate<string>("location.hash");

    await page.click(".trace-step:has(h2:text-is('Revision')) a");
    await page.waitForSelector("[data-page=principle][data-ready]");
    await expect(page.locator("h2:has-text('Versions')").count()).resolves.toBe(1);
    // The principle lists this item among the revisions written under it: the link goes both ways.
    const itemId = decodeURIComponent(itemHash.replace(/^#\/item\//, "").split("?")[0] ?? "");
    await expect(page.locator(`section:has(h2:has-text('Revisions written under it')) a[href="#/item/${encodeURIComponent(itemId)}"]`).count()).resolves.toBe(1);
    await page.screenshot({ path: path.join(SHOTS, "report-principle-1280.png"), fullPage: true });
    // Evidence links lead to the failures the principle came from.
    await page.click("section:has(h2:has-text('Evidence')) a >> nth=0");
    await page.waitForSelector("[data-page=item][data-ready]");
    await expect(page.locator(".trace-step:has(h2:text-is('Evidence for')) a").count()).resolves.toBeGreaterThan(0);
    expect(problems).toEqual([]);
  }, 120_000);

  it("compares two runs (iteralign report A B): both runs' figures side by side, the config keys that differ, each run's pages", async () => {
    const { page, problems } = await open(`${compareUrl}#/compare`, 1280);
    await page.waitForSelector("[data-page=compare][data-ready]");
    const header = await page.locator("table.compare thead th").allTextContents();
    expect(header).toEqual(["", "two", "one"]);
    const iterations = page.locator("table.compare tbody tr:has(td:text-is('iterations')) td");
    await expect(iterations.allTextContents()).resolves.toEqual(["iterations", "2", "1"]);
    const fig = page.locator('figure[data-chart="compare-failure-rate"]');
    expect(Number(await fig.getAttribute("data-points"))).toBe(3);
    await expect(page.locator("body").textContent()).resolves.toContain("loop.maxIterations");
    await page.screenshot({ path: path.join(SHOTS, "report-compare-1280.png"), fullPage: true });
    // The second run's own pages are in the same file.
    await page.click(".run-switch a:text-is('one')");
    await page.waitForSelector("[data-page=overview][data-ready]");
    await expect(page.locator("h1 .run-id").textContent()).resolves.toBe("one");
    expect(problems).toEqual([]);
  }, 120_000);

  it("works at a phone's width (390 px): no horizontal page scroll, charts fit", async () => {
    for (const route of ["overview", "iterations", "items"]) {
      const { page, problems } = await open(`${reportUrl}#/${route}`, 390);
      await page.waitForTimeout(300);
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
      expect(overflow, route).toBeLessThanOrEqual(1);
      await page.screenshot({ path: path.join(SHOTS, `report-${route}-390.png`), fullPage: true });
      expect(problems).toEqual([]);
      await page.close();
    }
  }, 120_000);
});
