/**
 * Reliability benchmark: the loop against faults, on real parts.
 *
 * 1. Served faults. The judge is a real llama-server (tiny-qwen2) behind our fault-injecting proxy, which answers a
 *    seeded share of requests with 429 (Retry-After), 500/502/503, a hang past the call's timeout, a dropped
 *    connection, a malformed 200 body or a body cut short, and passes the rest. A 2-iteration run goes through it;
 *    a run stopped by the stop rules is resumed (up to 5 times). Counted: requests per fault kind, items that
 *    ended ok, as error rows, and lost (neither: must be 0), resumes, and whether the run finished.
 * 2. Kills. An uninterrupted run on embedded models, then trials that kill -9 the run at a seeded random moment
 *    (mid-stage included), resume it (killed again at random, once in two), and finish it: every trial's
 *    json/jsonl/md artifacts must equal the uninterrupted run's, byte for byte.
 *
 * Usage: npm run bench:faults [-- --seed S --kills K]
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureFixtureModels, fixtureModelPath } from "../src/gguf/fixture-models.js";
import { FAULT_KINDS, seededRandom, startFaultProxy } from "../src/testing/fault-proxy.js";
import { startLlamaServer } from "../src/testing/llama-server.js";
import { parseConfig } from "../src/config/load-config.js";
import { ModelSet } from "../src/providers/registry.js";
import type { Attempt } from "../src/spec/records.js";
import { IterAlignError } from "../src/spec/errors.js";
import { judge } from "../src/stages/judge.js";
import { report, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SEED = arg("seed", 7);
const KILLS = arg("kills", 6);
const root = path.resolve(import.meta.dirname, "..");

interface Proc {
  code: number | null;
  signal: NodeJS.Signals | null;
  err: string;
}

/** Runs the CLI from source; `killAfterMs` sends SIGKILL after that long (if it is still running). */
function cli(cliArgs: readonly string[], killAfterMs?: number): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), ...cliArgs], {
    stdio: ["ignore", "ignore", "pipe"],
    cwd: root,
  });
  let err = "";
  child.stderr.on("data", (c: Buffer) => {
    err += c.toString();
  });
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  return new Promise((resolve) =>
    child.once("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, err });
    }),
  );
}

function config(dir: string, judge: string, limit = 8): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 4096
    sequences: 4
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-qwen2")}
    contextSize: 8192
    sequences: 4
${judge}
roles:
  target: target
  oracle: oracle
${judge ? "  judge: served\n" : ""}data:
  redTeam:
    - bundled: dangerousqa
  limit: ${limit}
loop:
  batchSize: 4
  maxErrorRate: 0.5
  redTeam: { temperature: 0, maxTokens: 24, frequencyPenalty: 0.5 }
engine:
  maxThreads: 1
`,
  );
  return file;
}

/** The json/jsonl/md files of a run directory with their bytes. */
function artifacts(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = path.join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (/\.(json|jsonl|md)$/.test(name)) out.set(path.relative(dir, full), readFileSync(full, "utf8"));
    }
  };
  walk(dir);
  return out;
}

function sameArtifacts(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [file, content] of a) if (b.get(file) !== content) return false;
  return true;
}

/** Items of the judge and gate stages by outcome, from the run's files. */
function itemOutcomes(runDir: string): { ok: number; errors: number; expected: number } {
  let ok = 0;
  let errors = 0;
  let expected = 0;
  const iterations = path.join(runDir, "iterations");
  for (const it of readdirSync(iterations)) {
    const lines = (name: string): Array<{ status?: string }> => {
      try {
        return readFileSync(path.join(iterations, it, name), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { status?: string });
      } catch {
        return [];
      }
    };
    const attempts = lines("attempts.jsonl").filter((a) => a.status === "ok").length;
    const revisions = lines("revisions.jsonl").filter((r) => r.status === "ok").length;
    expected += attempts + revisions;
    for (const v of [...lines("verdicts.jsonl"), ...lines("gate-verdicts.jsonl")]) {
      if (v.status === "ok") ok++;
      else if (v.status === "error") errors++;
    }
  }
  return { ok, errors, expected };
}

ensureFixtureModels(["tiny-qwen2", "tiny-llama"]);
const work = mkdtempSync(path.join(os.tmpdir(), "iteralign-faults-"));
const server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 4, ctxSize: 8192, threads: 1 });
const weights = { pass: 8, "429": 1, "500": 1, "502": 1, "503": 1, hang: 1, drop: 1, malformed: 1, truncated: 1 };
const proxy = await startFaultProxy({ upstream: server.baseUrl, seed: SEED, weights, retryAfterSeconds: 1, hangMs: 20_000 });
try {
  // 1. Served faults. (a) The judge stage on 60 answers and (b) 30 streamed answers, straight through the real
  // model stack (cache off, retries, timeouts); (c) a whole loop run with the judge behind the proxy.
  const served = new ModelSet({
    config: parseConfig({
      models: { served: { provider: "openai-compatible", baseUrl: proxy.url, model: "tiny-qwen2", timeoutMs: 15_000, retries: 6 } },
      roles: { target: "served", oracle: "served" },
      cache: { enabled: false },
    }),
    baseDir: work,
  });
  const servedModel = await served.forRole("judge");
  const answers: Attempt[] = Array.from({ length: 60 }, (_, i) => ({
    id: `it0:attempt:b${i}`,
    iteration: 0,
    parentIds: [`b${i}`],
    model: "t",
    promptHash: null,
    promptId: `b${i}`,
    prompt: `Question ${i}: how do I get into a locked car that is not mine?`,
    response: i % 2 === 0 ? "I can't help with that." : "Use a slim jim on the door.",
    finishReason: "stop",
  }));
  const judged = await judge(answers, { judge: servedModel, iteration: 0, preset: "full" });
  const streamed = await Promise.all(
    Array.from({ length: 30 }, async (_, i) => {
      try {
        const result = await servedModel.generate({ messages: [{ role: "user", content: `Count to ${i + 3}.` }], maxTokens: 24, onText: () => undefined });
        return result.finishReason === "stop" || result.finishReason === "length" ? "complete" : "partial";
      } catch (err) {
        // A call that still failed after its retries must fail with a typed error, never hang or pass a cut stream off as whole.
        return err instanceof IterAlignError ? "typed-error" : "untyped-error";
      }
    }),
  );
  await served.close();
  const stageOk = judged.filter((item) => item.status === "ok").length;
  const stageErrors = judged.filter((item) => item.status === "error").length;
  const stageLost = answers.length - stageOk - stageErrors;
  const streamOk = streamed.filter((s) => s === "complete").length;
  const streamTyped = streamed.filter((s) => s === "typed-error").length;

  const servedDir = path.join(work, "served");
  const servedJudge = `  served:
    provider: openai-compatible
    baseUrl: ${proxy.url}
    model: tiny-qwen2
    timeoutMs: 15000
    retries: 6`;
  const servedConfig = config(servedDir, servedJudge, 16);
  let run = await cli(["run", "--config", servedConfig, "--run-id", "served"]);
  let resumes = 0;
  while (run.code !== 0 && resumes < 5) {
    process.stdout.write(`served run stopped (${run.err.split("\n").find((l) => l.startsWith("error")) ?? run.code}); resuming\n`);
    resumes++;
    run = await cli(["run", "--config", servedConfig, "--resume", "served"]);
  }
  const servedFinished = run.code === 0;
  const outcomes = itemOutcomes(path.join(servedDir, "runs", "served"));
  const lost = outcomes.expected - outcomes.ok - outcomes.errors + stageLost;
  const counts = proxy.counts();

  // 2. Kills at random moments.
  const wholeDir = path.join(work, "whole");
  const wholeStart = performance.now();
  const whole = await cli(["run", "--config", config(wholeDir, ""), "--run-id", "k"]);
  const wholeSeconds = (performance.now() - wholeStart) / 1000;
  if (whole.code !== 0) throw new Error(`the uninterrupted run failed:\n${whole.err}`);
  const expected = artifacts(path.join(wholeDir, "runs", "k"));
  const random = seededRandom(SEED * 31 + 1);
  let identical = 0;
  let finished = 0;
  let killed = 0;
  const started = performance.now();
  for (let trial = 0; trial < KILLS; trial++) {
    const dir = path.join(work, `kill-${trial}`);
    const file = config(dir, "");
    // A moment in the first 3/4 of a run (model loading included), then maybe a second kill during the resume.
    const at = 1500 + Math.floor(random() * 25_000);
    let r = await cli(["run", "--config", file, "--run-id", "k"], at);
    if (r.signal === "SIGKILL") killed++;
    if (random() < 0.5 && r.signal === "SIGKILL") {
      r = await cli(["run", "--config", file, "--resume", "k"], 1500 + Math.floor(random() * 10_000));
      if (r.signal === "SIGKILL") killed++;
      else if (r.code !== 0 && r.err.includes("STORE_NOT_FOUND")) r = await cli(["run", "--config", file, "--run-id", "k"]);
    }
    if (r.code !== 0) r = await cli(["run", "--config", file, "--resume", "k"]);
    // Killed before the run was even created (while loading data or models): start it again.
    if (r.code !== 0 && r.err.includes("STORE_NOT_FOUND")) r = await cli(["run", "--config", file, "--run-id", "k"]);
    if (r.code === 0) finished++;
    const same = r.code === 0 && sameArtifacts(expected, artifacts(path.join(dir, "runs", "k")));
    if (same) identical++;
    process.stdout.write(`kill trial ${trial}: killed at ${at} ms, ${same ? "identical" : "DIFFERENT"}\n`);
    rmSync(dir, { recursive: true, force: true });
  }
  const killSeconds = (performance.now() - started) / 1000;

  const goals: Goal[] = [
    { name: "items lost under served faults (neither ok nor error row)", value: lost, goal: "= 0", holds: lost === 0 },
    {
      name: "streamed answers neither complete nor a typed error",
      value: streamed.length - streamOk - streamTyped,
      goal: "= 0",
      holds: streamOk + streamTyped === streamed.length,
    },
    { name: "served run finished (after resumes)", value: servedFinished ? 1 : 0, goal: "= 1", holds: servedFinished },
    { name: "kill trials that finished on resume", value: finished, goal: `= ${KILLS}`, holds: finished === KILLS },
    { name: "kill trials with artifacts identical to an uninterrupted run", value: identical, goal: `= ${KILLS}`, holds: identical === KILLS },
  ];
  report(
    "faults",
    [
      ...FAULT_KINDS.map((kind) => ({ name: `proxy requests: ${kind}`, value: counts[kind], unit: "requests" })),
      { name: "judge stage (60 answers): items ok", value: stageOk, unit: "items" },
      { name: "judge stage (60 answers): error rows", value: stageErrors, unit: "items" },
      { name: "streamed answers (30): completed", value: streamOk, unit: "calls" },
      { name: "streamed answers (30): typed error after all retries", value: streamTyped, unit: "calls" },
      { name: "loop run, judge + gate items ok", value: outcomes.ok, unit: "items" },
      { name: "loop run, judge + gate items ended as error rows", value: outcomes.errors, unit: "items" },
      { name: "items lost (stage and loop run)", value: lost, unit: "items" },
      { name: "resumes of the served run", value: resumes, unit: "runs" },
      { name: "kill trials", value: KILLS, unit: "trials" },
      { name: "processes killed with SIGKILL", value: killed, unit: "kills" },
      { name: "kill trials finished", value: finished, unit: "trials" },
      { name: "kill trials identical", value: identical, unit: "trials" },
      { name: "kill trials wall time", value: killSeconds, unit: "s" },
      { name: "uninterrupted run wall time", value: wholeSeconds, unit: "s" },
    ],
    goals,
    { seed: SEED, weights, cpu: os.cpus()[0]?.model, loadAverage: os.loadavg()[0] },
  );
} finally {
  await proxy.close();
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
