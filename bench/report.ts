/**
 * `npm run bench:report`: the report and the viewer on a 100,000-item run.
 *
 * Builds a store and run directory shaped like a long run (20 iterations of 5,000 red-team prompts: attempts,
 * verdicts, revisions of the failures under principles, gate verdicts and decisions, training examples, pool
 * snapshots, metrics files, evaluations), then measures:
 * - `iteralign view` (its own process, as a user runs it): time until the first page of items is on screen in
 *   chromium, each time from a freshly started server (nothing cached), median of 5; and the JSON API's first page
 *   of a fresh server, and a filtered page deep in the run from a warm one;
 * - `iteralign report`: generation time and file size of the static report of the whole run.
 * Goal (issue 16): the viewer's first page in under 1 s.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadRun } from "../src/report/run-view.js";
import { writeReport } from "../src/report/render.js";
import type { RecordRow } from "../src/store/run-store.js";
import { SqliteRunStore } from "../src/store/sqlite-run-store.js";
import { launchChromium } from "../test/helpers/browser.js";
import { median, report, type Goal } from "./bench-utils.js";

const ITERATIONS = Number(process.env.BENCH_REPORT_ITERATIONS ?? 20);
const PER_ITERATION = Number(process.env.BENCH_REPORT_ITEMS ?? 5000);
const PRINCIPLES_PER_ITERATION = 3;

function words(n: number, seed: number): string {
  const vocab = ["the", "model", "answer", "request", "harm", "safe", "refuse", "explain", "because", "policy", "user", "steps", "help", "cannot", "details", "risk"];
  let x = seed * 2654435761;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(vocab[x % vocab.length] as string);
  }
  return out.join(" ");
}

function build(dir: string): { store: SqliteRunStore; runId: string; runDir: string } {
  const runId = "big";
  const runDir = path.join(dir, "runs", runId);
  const store = new SqliteRunStore(path.join(dir, "store.db"));
  store.createRun({
    id: runId,
    configJson: JSON.stringify({ config: { models: { target: { provider: "llama-cpp", model: "/models/target.gguf" }, oracle: { provider: "openai-compatible", model: "judge" } }, roles: { target: "target", oracle: "oracle" }, train: { trainer: "llama-cpp" }, runsDir: "runs" }, baseDir: dir, configFile: path.join(dir, "iteralign.yaml") }),
    configHash: "0".repeat(64),
    createdAt: new Date().toISOString(),
  });
  const createdAt = new Date().toISOString();
  const row = (id: string, stage: string, iteration: number, payload: unknown, parentIds: string[] = [], status: "ok" | "error" = "ok"): RecordRow => ({
    runId, id, stage, iteration, kind: stage, parentIds, model: null, promptHash: null, status, payload, createdAt,
  });
  const principles: Array<{ id: string; version: number; title: string; text: string; source: "discovered"; firstIteration: number; evidence: string[]; mergedFrom: string[]; status: "active" | "retired" }> = [];
  for (let it = 0; it < ITERATIONS; it++) {
    const rows: RecordRow[] = [];
    const examples: unknown[] = [];
    let failures = 0;
    let fixed = 0;
    for (let p = 0; p < PRINCIPLES_PER_ITERATION; p++) {
      principles.push({ id: `p-${it}-${p}`, version: 1, title: `Principle ${it}.${p}`, text: words(30, it * 10 + p), source: "discovered", firstIteration: it, evidence: [], mergedFrom: [], status: "active" });
    }
    const active = principles.filter((p) => p.status === "active").slice(-5).map((p) => p.id);
    for (let i = 0; i < PER_ITERATION; i++) {
      const promptId = `bench:${it}-${i}`;
      const key = `it${it}`;
      const attempt = `${key}:attempt:${promptId}`;
      const fail = (i * 7 + it) % 5 < 3;
      rows.push(row(attempt, "red-team", it, { status: "ok", record: { id: attempt, iteration: it, parentIds: [promptId], model: "/models/target.gguf", promptHash: "h", promptId, prompt: `Question ${i}: ${words(25, i)}?`, response: words(160, i + it), finishReason: "stop" } }, [promptId]));
      rows.push(row(`${key}:verdict:${promptId}`, "judge", it, { status: "ok", record: { id: `${key}:verdict:${promptId}`, iteration: it, parentIds: [attempt], model: "judge", promptHash: "h", subjectId: attempt, preset: "full", verdict: { pass: !fail, violated: fail ? ["harmless"] : [], severity: fail ? "high" : "none", rationale: words(30, i) }, promptBenign: false } }, [attempt]));
      if (!fail) continue;
      failures++;
      if (principles.length > 0 && i % 50 === 0) (principles[principles.length - 1 - (i % PRINCIPLES_PER_ITERATION)] as { evidence: string[] }).evidence.push(attempt);
      const revision = `${key}:revision:${promptId}`;
      rows.push(row(revision, "self-correct", it, { status: "ok", record: { id: revision, iteration: it, parentIds: [attempt, ...active], model: "/models/target.gguf", promptHash: "h", attemptId: attempt, mode: "paper", principleIds: active, critique: null, revised: words(140, i * 3) } }, [attempt]));
      const accepted = i % 3 !== 0;
      rows.push(row(`${key}:gate-verdict:${promptId}`, "gate", it, { status: "ok", record: { id: `${key}:gate-verdict:${promptId}`, iteration: it, parentIds: [revision], model: "judge", promptHash: "h", subjectId: revision, preset: "full", verdict: { pass: accepted, violated: [], severity: "none", rationale: words(20, i) }, promptBenign: false, refusal: false } }, [revision]));
      rows.push(row(`${key}:gate:${promptId}`, "gate-decision", it, { status: "ok", record: { id: `${key}:gate:${promptId}`, iteration: it, parentIds: [revision], model: "judge", promptHash: "h", revisionId: revision, accepted, reason: accepted ? "pass" : "still-failing" } }, [revision]));
      if (accepted) {
        fixed++;
        examples.push({ id: `${key}:example:${promptId}`, iteration: it, attemptId: attempt, revisionId: revision, messages: [{ role: "user", content: `Question ${i}` }, { role: "assistant", content: words(140, i * 3) }], chosen: words(140, i * 3), rejected: words(160, i + it) });
      }
    }
    const stageMarker = (stage: string, items: number): RecordRow => row(`it${it}:done:${stage}`, "marker", it, { status: "ok", record: { seconds: items / 50, promptTokens: items * 300, completionTokens: items * 120, calls: items, costUsd: items * 0.0004, spentUsd: 0, items, errors: 0 } });
    rows.push(stageMarker("red-team", PER_ITERATION), stageMarker("judge", PER_ITERATION), stageMarker("propose", 1), stageMarker("self-correct", failures), stageMarker("gate", failures));
    rows.push(row(`it${it}:done:pool`, "marker", it, { status: "ok", record: { principles: structuredClone(principles), changes: {} } }));
    const metrics = {
      iteration: it, prompts: PER_ITERATION, attempts: PER_ITERATION, failures, failureRate: failures / PER_ITERATION, errors: 0,
      itemsByStage: { "red-team": PER_ITERATION, judge: PER_ITERATION, propose: 1, "self-correct": failures, gate: failures },
      errorsByStage: { "red-team": 0, judge: 0, propose: 0, "self-correct": 0, gate: 0 },
      costUsd: 0, costByStage: {}, principlesAdded: PRINCIPLES_PER_ITERATION, principlesMerged: 0, principlesRetired: 0, revisions: failures,
      gatePassRate: failures > 0 ? fixed / failures : null, fixed, gateRejections: { "still-failing": failures - fixed }, trainingExamples: fixed, preferencePairsDropped: 0, skipped: false,
    };
    rows.push(row(`it${it}:done:iteration`, "marker", it, { status: "ok", record: { metrics, pool: { principles }, examples } }));
    store.putRecords(rows);
    const itDir = path.join(runDir, "iterations", String(it).padStart(3, "0"));
    mkdirSync(itDir, { recursive: true });
    writeFileSync(path.join(itDir, "metrics.json"), JSON.stringify({ version: 1, ...metrics }));
  }
  store.updateRunStatus(runId, "finished", { finishedAt: new Date().toISOString() });
  return { store, runId, runDir };
}

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

/** `iteralign view` on the store, in its own process; resolves with its URL once it listens. */
function startView(storePath: string): Promise<{ url: string; child: ChildProcess }> {
  // The built CLI, as a user runs it (`npm run bench:report` builds it first).
  const child = spawn(process.execPath, [path.join(root, "bin/iteralign.js"), "view", "--store", storePath, "--port", "0"], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString("utf8");
      const m = /iteralign view: (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1] as string, child });
    });
    child.once("exit", (code) => reject(new Error(`iteralign view exited (${code}) before listening: ${out}`)));
  });
}

async function stopView(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGINT");
  });
}

const dir = mkdtempSync(path.join(tmpdir(), "iteralign-bench-report-"));
try {
  process.stdout.write(`building a ${ITERATIONS * PER_ITERATION}-item run in ${dir}...\n`);
  let t = performance.now();
  const { store, runId, runDir } = build(dir);
  const buildSeconds = (performance.now() - t) / 1000;
  const dbBytes = statSync(path.join(dir, "store.db")).size;

  // The viewer's API: first page of items, cold (new viewer: the index is built) and warm.
  const apiCold: number[] = [];
  const apiWarm: number[] = [];
  const storePath = path.join(dir, "store.db");
  for (let i = 0; i < 5; i++) {
    const { url, child } = await startView(storePath);
    const viewer = { url };
    t = performance.now();
    const r = await fetch(`${viewer.url}/api/runs/${runId}/items?limit=50`);
    const page = (await r.json()) as { total: number };
    apiCold.push((performance.now() - t) / 1000);
    if (page.total !== ITERATIONS * PER_ITERATION) throw new Error(`expected ${ITERATIONS * PER_ITERATION} items, the viewer has ${page.total}`);
    t = performance.now();
    await (await fetch(`${viewer.url}/api/runs/${runId}/items?limit=50&offset=60000&verdict=fail`)).json();
    apiWarm.push((performance.now() - t) / 1000);
    await stopView(child);
  }

  // The same in chromium: a cold viewer, the items page opened until its table is on screen.
  const browser = await launchChromium();
  const pageLoads: number[] = [];
  /** Per request of the page: path -> durations (s), to see where the time goes. */
  const requestTimes = new Map<string, number[]>();
  for (let i = 0; i < 5; i++) {
    const { url, child } = await startView(storePath);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("requestfinished", (req) => {
      const timing = req.timing();
      const key = new URL(req.url()).pathname.replace(`/${runId}/`, "/<run>/");
      requestTimes.set(key, [...(requestTimes.get(key) ?? []), (timing.responseEnd - timing.requestStart) / 1000]);
    });
    t = performance.now();
    await page.goto(`${url}/runs/${runId}#/items`);
    await page.waitForSelector("table.items tbody tr");
    pageLoads.push((performance.now() - t) / 1000);
    await page.close();
    await stopView(child);
  }
  await browser.close();

  // The static report of the whole run.
  t = performance.now();
  const loaded = loadRun({ store, runId, runDir });
  const loadSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const stats = writeReport(path.join(dir, "report.html"), [{ loaded, store, runDir }]);
  const reportSeconds = (performance.now() - t) / 1000;
  store.close();

  const firstPage = median(pageLoads);
  const goals: Goal[] = [{ name: "viewer: first page of 100,000 items in chromium (cold server, s)", value: firstPage, goal: "< 1 s", holds: firstPage < 1 }];
  report(
    "report",
    [
      { name: "items", value: stats.items, unit: "items" },
      { name: "build the synthetic store", value: buildSeconds, unit: "s" },
      { name: "store size", value: dbBytes / 1e6, unit: "MB" },
      { name: "viewer API first page, fresh server (median of 5)", value: median(apiCold), unit: "s" },
      { name: "viewer API failures page at offset 60,000, warm (median of 5)", value: median(apiWarm), unit: "s" },
      { name: "viewer page in chromium until the items table shows (median of 5)", value: firstPage, unit: "s" },
      ...[...requestTimes].map(([key, times]) => ({ name: `  page request ${key} (median)`, value: median(times), unit: "s" })),
      { name: "report: load the run (index, principles, metrics)", value: loadSeconds, unit: "s" },
      { name: "report: write the HTML", value: reportSeconds, unit: "s" },
      { name: "report: file size", value: stats.bytes / 1e6, unit: "MB" },
      { name: "report: embedded JSON before gzip", value: stats.jsonBytes / 1e6, unit: "MB" },
    ],
    goals,
    { apiCold, apiWarm, pageLoads, requestTimes: Object.fromEntries(requestTimes), reportBytes: stats.bytes, jsonBytes: stats.jsonBytes },
  );
} finally {
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
}
