import path from "node:path";
import type { Browser, Dialog, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeReport } from "../../src/report/render.js";
import { loadRun } from "../../src/report/run-view.js";
import { startViewer, type Viewer } from "../../src/report/server.js";
import { launchChromium } from "../helpers/browser.js";
import { PAYLOADS, payloadRun } from "../helpers/payload-run.js";

let run: Awaited<ReturnType<typeof payloadRun>>;
let browser: Browser;
let reportUrl: string;
let viewer: Viewer;

beforeAll(async () => {
  run = await payloadRun();
  const file = path.join(run.dir, "report.html");
  writeReport(file, [{ loaded: loadRun(run), store: run.store, runDir: run.runDir }]);
  reportUrl = `file://${file}`;
  viewer = await startViewer({ store: run.store, port: 0 });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  run?.store.close();
});

interface Watch {
  readonly page: Page;
  readonly events: string[];
}

/** A page that records dialogs (alert/confirm), script errors, CSP violations and navigations away. */
async function watch(): Promise<Watch> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const events: string[] = [];
  page.on("dialog", (d: Dialog) => {
    events.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on("pageerror", (e) => events.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("favicon")) events.push(`console: ${m.text()}`);
  });
  await page.addInitScript({ content: 'document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective));' });
  return { page, events };
}

/** Nothing ran: no payload set its flag, no element a payload would make exists, no script beyond the page's own. */
async function assertInert(w: Watch, scripts: number): Promise<void> {
  expect(await w.page.evaluate<unknown>("window.__xss")).toBeUndefined();
  expect(await w.page.evaluate<number>("document.querySelectorAll('img, iframe, svg, object, embed, [onerror], [onload], [onmouseover]').length")).toBe(0);
  expect(await w.page.evaluate<number>("document.scripts.length")).toBe(scripts);
  expect(await w.page.evaluate<number>("[...document.querySelectorAll('a[href]')].filter((a) => !/^(#|\\/runs\\/)/.test(a.getAttribute('href'))).length")).toBe(0);
  expect(w.events).toEqual([]);
}

async function visitEverything(w: Watch, base: string, scripts: number): Promise<{ texts: string }> {
  let texts = "";
  const go = async (hash: string): Promise<void> => {
    await w.page.goto(`${base}${hash}`);
    await w.page.waitForSelector("#page[data-ready]");
    await w.page.waitForTimeout(50);
    texts += (await w.page.locator("#page").textContent()) ?? "";
    await assertInert(w, scripts);
  };
  for (const page of ["overview", "iterations", "constitution", "items", "eval"]) await go(`#/${page}`);
  const itemLinks = await Promise.all((await w.page.locator("a").all()).map((a) => a.getAttribute("href")));
  await go("#/items");
  const items = await Promise.all((await w.page.locator("table.items tbody a").all()).map((a) => a.getAttribute("href")));
  expect(items.length).toBe(8);
  for (const href of items) await go(href ?? "");
  await go("#/constitution");
  const principles = await Promise.all((await w.page.locator("table.principles a").all()).map((a) => a.getAttribute("href")));
  for (const href of principles) await go(href ?? "");
  await go("#/eval");
  const evals = await Promise.all((await w.page.locator("a[href^='#/eval/']").all()).map((a) => a.getAttribute("href")));
  for (const href of evals) await go(href ?? "");
  expect(itemLinks.length).toBeGreaterThan(0);
  return { texts };
}

describe("hostile model output", () => {
  it("in the static report: shown as text on every page, never run, with bidi controls made visible", async () => {
    const w = await watch();
    const { texts } = await visitEverything(w, reportUrl, 2);
    // The payloads are there, as text.
    for (const payload of [PAYLOADS.script, PAYLOADS.img, PAYLOADS.iframe, PAYLOADS.breakout, PAYLOADS.js, PAYLOADS.attr]) expect(texts).toContain(payload);
    expect(texts).toContain("[U+202E]exe.txt");
    expect(texts).not.toContain("\u202E");
    // The 1 MB answer is shortened in the page, and says so.
    expect(texts).toMatch(/shortened from 1,000,031 characters/);
  }, 300_000);

  it("in iteralign view: the same pages from the API, never run", async () => {
    const w = await watch();
    const { texts } = await visitEverything(w, `${viewer.url}/runs/${run.runId}`, 1);
    for (const payload of [PAYLOADS.script, PAYLOADS.img, PAYLOADS.breakout]) expect(texts).toContain(payload);
    // The viewer serves whole texts: the 1 MB answer is shown in full, as text.
    expect(texts).toContain("A".repeat(10_000));
  }, 300_000);
});
