import { request } from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLoop } from "../../src/pipeline/run-loop.js";
import { startViewer, type Viewer } from "../../src/report/server.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { wrapModel } from "../../src/providers/middleware/wrap.js";
import type { LanguageModel, Role } from "../../src/spec/language-model.js";
import { deferred } from "../../src/testing/scripted-model.js";
import { launchChromium } from "../helpers/browser.js";
import { payloadRun } from "../helpers/payload-run.js";
import { scriptedLoopConfig, scriptedLoopModels } from "../helpers/scripted-loop.js";
import { runCli } from "../helpers/cli.js";

let run: Awaited<ReturnType<typeof payloadRun>>;
let viewer: Viewer;

beforeAll(async () => {
  run = await payloadRun();
  viewer = await startViewer({ store: run.store, port: 0 });
}, 120_000);
afterAll(async () => {
  await viewer?.close();
  run?.store.close();
});

/** A raw GET with a chosen Host header (fetch does not let tests set it). */
function get(url: string, options: { host?: string; method?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: options.method ?? "GET", headers: options.host ? { host: options.host } : {} }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("iteralign view over HTTP", () => {
  it("lists runs and serves a run's view, paged and filtered items, traces and eval items as JSON", async () => {
    const runs = JSON.parse((await get(`${viewer.url}/api/runs`)).body) as Array<{ runId: string; status: string; iterations: number }>;
    expect(runs).toEqual([expect.objectContaining({ runId: "xss", status: "finished", iterations: 2 })]);
    const view = JSON.parse((await get(`${viewer.url}/api/runs/xss/view`)).body) as { runId: string; iterations: unknown[] };
    expect([view.runId, view.iterations.length]).toEqual(["xss", 2]);
    const page = JSON.parse((await get(`${viewer.url}/api/runs/xss/items?iteration=1&limit=3`)).body) as { total: number; items: Array<{ id: string }> };
    expect([page.total, page.items.length]).toEqual([4, 3]);
    const next = JSON.parse((await get(`${viewer.url}/api/runs/xss/items?iteration=1&limit=3&offset=3`)).body) as { items: Array<{ id: string }> };
    expect(next.items).toHaveLength(1);
    const id = page.items[0]?.id ?? "";
    const trace = JSON.parse((await get(`${viewer.url}/api/runs/xss/items/${encodeURIComponent(id)}`)).body) as { id: string; gateDecision: unknown };
    expect(trace.id).toBe(id);
    expect(trace.gateDecision).toEqual({ accepted: true, reason: "pass" });
    const evalItems = JSON.parse((await get(`${viewer.url}/api/runs/xss/eval/base/asr`)).body) as unknown[];
    expect(evalItems).toHaveLength(3);
  });

  it("answers bad requests with a status and a message, and sends its security headers", async () => {
    const bad = await get(`${viewer.url}/api/runs/xss/items?verdict=maybe`);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ error: expect.stringContaining("verdict") as unknown, code: "USAGE" });
    expect((await get(`${viewer.url}/api/runs/nope/view`)).status).toBe(404);
    expect((await get(`${viewer.url}/api/runs/xss/items/it9:attempt:x`)).status).toBe(404);
    expect((await get(`${viewer.url}/api/runs/xss/eval/..%2F..%2Fetc/passwd`)).status).toBe(400);
    expect((await get(`${viewer.url}/runs/nope`)).status).toBe(404);
    expect((await get(`${viewer.url}/api/runs`, { method: "POST" })).status).toBe(405);
    // Another site's name pointing at this port (DNS rebinding) gets nothing.
    const rebound = await get(`${viewer.url}/api/runs`, { host: "evil.example:80" });
    expect(rebound.status).toBe(421);
    const page = await get(`${viewer.url}/runs/xss`);
    expect(page.status).toBe(200);
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.headers["content-security-policy"]).toContain("default-src 'none'");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.body).toContain('<meta name="iteralign-run" content="xss">');
  });

  it("iteralign view serves a store until stopped, and refuses a missing store", async () => {
    const { viewCommand } = await import("../../src/cli/commands/view.js");
    let url = "";
    let out = "";
    const io = { out: (t: string) => (out += t), err: () => undefined, stdin: process.stdin, isTTY: false };
    const ctl = new AbortController();
    const code = viewCommand({ config: "unused.yaml", store: path.join(run.dir, "store.db"), port: 0, signal: ctl.signal, onListening: (u) => (url = u) }, io);
    for (let i = 0; i < 100 && url === ""; i++) await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain(`iteralign view: ${url} (Ctrl-C to stop)`);
    expect((await get(`${url}/api/runs`)).status).toBe(200);
    ctl.abort();
    await expect(code).resolves.toBe(0);
    const missing = await runCli(["view", "--store", path.join(run.dir, "none.db"), "--port", "0"]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("no run store at");
  });
});

describe("iteralign view in chromium", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("goes from the runs list to a run, pages through its items with the API", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${viewer.url}/`);
    await page.waitForSelector("table.runs");
    await page.click("table.runs a:text-is('xss')");
    await page.waitForSelector("[data-page=overview][data-ready]");
    await page.click("nav.tabs >> text=Items");
    await page.waitForSelector("table.items[data-total='8']");
    await page.selectOption("select[name=iteration]", "0");
    await page.waitForSelector("table.items[data-total='4']");
    await expect(page.locator("table.items tbody tr").count()).resolves.toBe(4);
    await page.close();
  });

  it("follows a running run live: its stages appear as they finish, and the page updates when it ends", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-live-"));
    const store = new SqliteRunStore(path.join(dir, "store.db"));
    const live = await startViewer({ store, port: 0 });
    const gate = deferred<void>();
    const models = scriptedLoopModels(store, "live");
    // Once iteration 0 is stored, the red team (prompts without constitutions) waits until the test lets it go.
    const loopModels = {
      ...models,
      forRole: async (role: Role): Promise<LanguageModel> => {
        const m = await models.forRole(role);
        if (role !== "target") return m;
        return wrapModel(m, {
          generate: async (req, next) => {
            if (store.getRecord("live", "it0:done:iteration") && !req.messages.some((x) => x.content.includes("Constitutions:"))) await gate.promise;
            return next(req);
          },
        });
      },
    };
    const loop = runLoop({ loaded: scriptedLoopConfig(dir, { maxIterations: 2 }, { limit: 8 }), runId: "live", store, models: () => loopModels });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      // Wait for iteration 0 to finish (its red-team marker is in the store), then open the run.
      for (let i = 0; i < 200 && !store.getRecord("live", "it0:done:iteration"); i++) await new Promise((r) => setTimeout(r, 50));
      await page.goto(`${live.url}/runs/live`);
      await page.waitForSelector(".live");
      await expect(page.locator("h1 .status").textContent()).resolves.toBe("running");
      await expect(page.locator(".live").textContent()).resolves.toContain("1 iterations finished");
      gate.resolve();
      await loop;
      await page.waitForSelector("h1 .status-finished", { timeout: 15_000 });
      await expect(page.locator(".live").count()).resolves.toBe(0);
      await page.click("nav.tabs >> text=Iterations");
      await page.waitForSelector("table.iterations");
      await expect(page.locator("table.iterations tbody tr").count()).resolves.toBe(2);
    } finally {
      gate.resolve();
      await page.close();
      await live.close();
      store.close();
    }
  }, 60_000);
});
