import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadItemTraces, parseItemQuery } from "../../src/report/item-index.js";
import { escapeHtml, jsonForScript, reportAssets, reportCsp, writeReport } from "../../src/report/render.js";
import { loadRun, readArtifact, redactSecrets, runProgress } from "../../src/report/run-view.js";
import { MetricsFileSchema } from "../../src/spec/artifacts.js";
import type { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { ONE_MB, PAYLOADS, payloadRun } from "../helpers/payload-run.js";
import { createHash } from "node:crypto";

let run: Awaited<ReturnType<typeof payloadRun>>;
let store: SqliteRunStore;
beforeAll(async () => {
  run = await payloadRun();
  store = run.store;
}, 120_000);
afterAll(() => store.close());

describe("run loader", () => {
  it("reads the run's overview: iterations with stage usage, principles with versions and links, evaluations", () => {
    const { view, index } = loadRun(run);
    expect(view.version).toBe(1);
    expect(view.status).toBe("finished");
    expect(view.stopReason).toBe("reached loop.maxIterations (2)");
    expect(view.iterations.map((i) => i.iteration)).toEqual([0, 1]);
    const stages = view.iterations[0]?.stages.map((s) => s.stage);
    expect(stages).toEqual(expect.arrayContaining(["red-team", "judge", "propose", "self-correct", "gate"]));
    for (const s of view.iterations[0]?.stages ?? []) if (s.stage !== "pool" && s.stage !== "train") expect(s.seconds).not.toBeNull();
    expect(index.size).toBe(8);
    // Every failure was fixed: each principle's revisions were accepted and exported.
    const p = view.principles[0];
    expect(p?.title).toBe(`Refuse ${PAYLOADS.script}`);
    expect(p?.evidence.length).toBeGreaterThan(0);
    expect(p?.revisions).toBeGreaterThan(0);
    expect(p?.accepted).toBe(p?.revisions);
    expect(view.eval.entries.map((e) => e.label)).toEqual(["base", "iter-000", "iter-001"]);
    expect(view.eval.benchmarks.every((b) => b.benchmark === "asr" && b.items === 3)).toBe(true);
    expect(view.warnings).toEqual([]);
  });

  it("indexes items with filters and facets, and pages them", () => {
    const { index } = loadRun(run);
    const all = index.query({});
    expect(all.total).toBe(8);
    expect(all.facets.iterations).toEqual([0, 1]);
    expect(all.facets.datasets).toEqual(["payloads"]);
    expect(all.facets.categories.length).toBeGreaterThan(0);
    expect(index.query({ iteration: 1 }).total).toBe(4);
    expect(index.query({ verdict: "fail", stage: "exported" }).total).toBe(8);
    expect(index.query({ gate: "accepted" }).total).toBe(8);
    expect(index.query({ verdict: "pass" }).total).toBe(0);
    const page = index.query({ limit: 3, offset: 6 });
    expect([page.items.length, page.offset, page.total]).toEqual([2, 6, 8]);
    const found = index.query({ text: "ONLOAD" });
    expect(found.total).toBeGreaterThan(0);
    expect(found.items.every((i) => i.promptStart.toLowerCase().includes("onload"))).toBe(true);
    const principle = loadRun(run).view.principles[0]?.id as string;
    expect(index.query({ principle }).total).toBeGreaterThan(0);
    expect(parseItemQuery(new URLSearchParams("iteration=1&verdict=fail&limit=10&errors=false"))).toEqual({ iteration: 1, verdict: "fail", limit: 10, errors: false });
    expect(() => parseItemQuery(new URLSearchParams("verdict=maybe"))).toThrow(/item query: verdict/);
    expect(() => parseItemQuery(new URLSearchParams("drop=1"))).toThrow(/item query/);
  });

  it("links an item's whole trace: prompt, answer, verdict, revision under its principles, gate, example", () => {
    const loaded = loadRun(run);
    const summary = loaded.index.query({ text: "onload" }).items.find((i) => i.iteration === 0);
    expect(summary).toBeDefined();
    const [full] = loadItemTraces(store, run.runId, [summary!], { principleTitles: loaded.principleTitles, evidenceFor: loaded.evidenceFor });
    expect(full?.response).toBe(ONE_MB);
    expect(full?.judge?.pass).toBe(false);
    expect(full?.revision?.principles[0]?.title).toBe(`Refuse ${PAYLOADS.script}`);
    expect(full?.gateDecision).toEqual({ accepted: true, reason: "pass" });
    expect(full?.example?.chosen).toContain(PAYLOADS.breakout);
    expect(full?.example?.messages.some((m) => m.content.includes("Constitutions:"))).toBe(false);
    expect(full?.evidenceFor.length).toBeGreaterThan(0);
    const [short] = loadItemTraces(store, run.runId, [summary!], { maxChars: 1000 });
    expect(short?.response?.length).toBe(1000);
    expect(short?.truncated.response).toBe(ONE_MB.length);
  });

  it("reports progress from the stages' markers", () => {
    const p = runProgress(store, run.runId);
    expect(p.status).toBe("finished");
    expect(p.iterations).toBe(2);
    expect(p.stages.filter((s) => s.iteration === 1).map((s) => s.stage)).toEqual(expect.arrayContaining(["red-team", "judge", "self-correct", "gate"]));
    expect(p.stages.find((s) => s.stage === "red-team")?.items).toBe(4);
  });

  it("refuses an artifact of a newer version, and a damaged one, naming the file", () => {
    const file = path.join(run.dir, "future", "metrics.json");
    mkdirSync(path.dirname(file), { recursive: true });
    const current = JSON.parse(readFileSync(path.join(run.runDir, "iterations", "000", "metrics.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...current, version: 2 }));
    expect(() => readArtifact(file, MetricsFileSchema)).toThrow(new RegExp(`${file}: version 2 is newer than this iteralign reads \\(1\\)`));
    writeFileSync(file, JSON.stringify({ ...current, failureRate: "high" }));
    expect(() => readArtifact(file, MetricsFileSchema)).toThrow(/failureRate/);
    writeFileSync(file, "{");
    expect(() => readArtifact(file, MetricsFileSchema)).toThrow(/not valid JSON/);
  });

  it("redacts secrets from the config it shows", () => {
    expect(
      redactSecrets({ models: { a: { provider: "openai-compatible", apiKeyEnv: "OPENAI_API_KEY", apiKey: "sk-1", headers: { Authorization: "Bearer x", "X-Team": "t" } } }, token: "abc" }),
    ).toEqual({ models: { a: { provider: "openai-compatible", apiKeyEnv: "OPENAI_API_KEY", apiKey: "<redacted>", headers: { Authorization: "<redacted>", "X-Team": "<redacted>" } } }, token: "<redacted>" });
  });
});

describe("the HTML report", () => {
  it("embeds its data as base64 of gzipped JSON, and allows only its own script and style by hash", () => {
    const file = path.join(run.dir, "report.html");
    const stats = writeReport(file, [{ loaded: loadRun(run), store, runDir: run.runDir }], { maxChars: 5000 });
    const html = readFileSync(file, "utf8");
    expect(stats.items).toBe(8);
    // No payload appears as markup anywhere in the file: model text lives only inside the base64 data.
    for (const payload of Object.values(PAYLOADS)) expect(html).not.toContain(payload);
    const data = /<script type="application\/octet-stream" id="iteralign-data">([A-Za-z0-9+/=]+)<\/script>/.exec(html)?.[1];
    expect(data).toBeDefined();
    const parsed = JSON.parse(gunzipSync(Buffer.from(data!, "base64")).toString("utf8")) as { runs: Array<{ items: unknown[]; traces: Array<{ response: string; truncated: Record<string, number> }> }> };
    expect(parsed.runs[0]?.items).toHaveLength(8);
    const big = parsed.runs[0]?.traces.find((t) => t.truncated.response !== undefined);
    expect(big?.response.length).toBe(5000);
    const assets = reportAssets();
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1] ?? "";
    expect(csp).toBe(escapeHtml(reportCsp(assets)));
    expect(csp).toContain("default-src &#39;none&#39;");
    const inline = /<script>([\s\S]*)<\/script>\n<\/body>/.exec(html)?.[1] ?? "";
    expect(csp).toContain(`sha256-${createHash("sha256").update(inline).digest("base64")}`);
    expect(html.match(/<script/g)).toHaveLength(2);
  });

  it("writes JSON for a script element that no string can break out of", () => {
    const text = jsonForScript({ a: "</script><script>alert(1)</script>", b: "<!-- \u2028 & >" });
    expect(text).not.toMatch(/[<>&\u2028\u2029]/);
    expect(JSON.parse(text)).toEqual({ a: "</script><script>alert(1)</script>", b: "<!-- \u2028 & >" });
    expect(escapeHtml(`"<a href='x'>&</a>"`)).toBe("&#34;&#60;a href=&#39;x&#39;&#62;&#38;&#60;/a&#62;&#34;");
  });
});
