/**
 * Loop benchmark on the ~100M generated model (152k vocabulary, Q8_0), against the limits users compare with,
 * on the same model, prompts and settings:
 *  - red-team stage vs `llama-batched-bench` (built from the same llama.cpp source) at the same parallel sequence
 *    count, prompt length and generation length: aggregate (prompt + generated) tokens/s, goal >= 0.9x; the stage
 *    runs on the default generation path (`auto`: the native generator, iteralign-generate, once built) and, for
 *    comparison, on the engine path (node-llama-cpp);
 *  - judge stage vs `llama-server` with as many slots as the loop has sequences, the same messages, the same JSON
 *    schema as `response_format` and the same maximum length: generated tokens/s, goal >= 1.0x;
 *  - shared-prefix reuse in the judge stage: prompt tokens evaluated with and without it (goal: at most one
 *    prefix per decode group plus every suffix) and the answers with and without it (goal: identical);
 *  - threads under load: the red-team stage with one other core-bound process running, at each fixed thread count
 *    and with the default adaptive budget (goals: close to the best fixed count, idle and loaded).
 * Both loop stages use the same model (target and judge), as a one-model setup on a laptop would.
 * Usage: npm run bench:loop [-- --prompts N --sequences S --runs R --generation auto|native|engine]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { z } from "zod";
import { parseConfig } from "../src/config/load-config.js";
import { loadBundled } from "../src/datasets/bundled.js";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { ensureLlamaBuild } from "../src/native/llama-build.js";
import { commonPrefixLength } from "../src/providers/llama-cpp/group-scheduler.js";
import { LlamaCppModel } from "../src/providers/llama-cpp/llama-cpp-model.js";
import { nativeToolBuilt } from "../src/providers/llama-cpp/native-path.js";
import { wrapModel } from "../src/providers/middleware/wrap.js";
import { ModelSet } from "../src/providers/registry.js";
import type { ChatMessage, GenerationParams, JsonSchema, LanguageModel } from "../src/spec/language-model.js";
import type { Attempt } from "../src/spec/records.js";
import { judge, okRecords, redTeam } from "../src/stages/index.js";
import { SqliteRunStore } from "../src/store/sqlite-run-store.js";
import { startLlamaServer } from "../src/testing/llama-server.js";
import { median, report, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const PROMPTS = arg("prompts", 16);
const SEQUENCES = arg("sequences", 16);
const RUNS = arg("runs", 3);
const CORES = os.availableParallelism();
const THREADS = Math.min(CORES, 4);
const RED_TEAM: GenerationParams = { temperature: 0, maxTokens: 64, frequencyPenalty: 0.5 };
/** Room for a random-weight judge, which fills every string of the verdict to its maximum length. */
const JUDGE: GenerationParams = { temperature: 0, maxTokens: 1024 };
const CONTEXT = 1536;
const GENERATION = (args.includes("--generation") ? args[args.indexOf("--generation") + 1] : "auto") as "auto" | "native" | "engine";

const file = ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
const prompts = (await loadBundled("harmfulqa")).slice(0, PROMPTS);
const log = (m: string): void => void process.stderr.write(`${m}\n`);
log(`model ${file}, ${THREADS} threads of ${CORES} cores, ${PROMPTS} prompts, ${SEQUENCES} sequences, ${RUNS} runs`);

/** One recorded judge call of the loop: what llama-server is sent. */
interface Recorded {
  readonly messages: readonly ChatMessage[];
  readonly params: GenerationParams;
  readonly jsonSchema: JsonSchema;
}

/** `threads` undefined: the default, adaptive thread budget. */
function modelSet(name: string, storeDir: string, threads: number | undefined, generation = GENERATION): { set: ModelSet; store: SqliteRunStore } {
  const config = parseConfig({
    models: { m: { provider: "llama-cpp", model: file, contextSize: CONTEXT, sequences: SEQUENCES, generation } },
    roles: { target: "m", oracle: "m" },
    engine: threads === undefined ? {} : { maxThreads: threads },
    // Every run does the engine work: no answers from the cache.
    cache: { enabled: false },
  });
  const store = new SqliteRunStore(path.join(storeDir, `${name}.db`));
  store.createRun({ id: name, configJson: "{}", configHash: name, createdAt: new Date().toISOString() });
  return { set: new ModelSet({ config, baseDir: process.cwd(), callLog: store, runId: name }), store };
}

/** Records the structured requests a model receives. */
function recording(model: LanguageModel, into: Recorded[]): LanguageModel {
  return wrapModel(model, {
    generateObject: (request, next) => {
      const { messages, signal: _s, schema, jsonSchema, schemaName: _n, ...params } = request;
      into.push({ messages, params, jsonSchema: jsonSchema ?? z.toJSONSchema(schema) });
      return next(request);
    },
  });
}

interface StageFigures {
  seconds: number;
  tokens: number;
  promptTokens: number;
}
const totals = (set: ModelSet): { completionTokens: number; promptTokens: number } => set.meter.snapshot().totals;

async function redTeamStage(set: ModelSet, count: number): Promise<{ figures: StageFigures; attempts: Attempt[] }> {
  const target = await set.forRole("target");
  const t0 = totals(set);
  const start = performance.now();
  const attempts = okRecords(await redTeam(prompts.slice(0, count), { target, iteration: 0, params: RED_TEAM }));
  const seconds = (performance.now() - start) / 1000;
  const t1 = totals(set);
  return { figures: { seconds, tokens: t1.completionTokens - t0.completionTokens, promptTokens: t1.promptTokens - t0.promptTokens }, attempts };
}

async function judgeStage(set: ModelSet, attempts: readonly Attempt[], record?: Recorded[]): Promise<StageFigures> {
  const model = await set.forRole("judge");
  const t0 = totals(set);
  const start = performance.now();
  const verdicts = await judge(attempts, { judge: record ? recording(model, record) : model, iteration: 0, preset: "full", params: JUDGE });
  const seconds = (performance.now() - start) / 1000;
  const t1 = totals(set);
  // A failed call's tokens are not metered: every call must succeed for tokens/s to be comparable.
  const failed = verdicts.length - okRecords(verdicts).length;
  if (failed > 0) throw new Error(`${failed} judge calls failed; raise the judge's maxTokens`);
  return { seconds, tokens: t1.completionTokens - t0.completionTokens, promptTokens: t1.promptTokens - t0.promptTokens };
}

const storeDir = mkdtempSync(path.join(tmpdir(), "iteralign-bench-loop-"));
if (GENERATION !== "engine") await ensureLlamaBuild({ targets: ["iteralign-generate"], onLine: () => undefined });

// 1. The loop's stages as the loop runs them (stage functions, middleware, call log, lockstep decode groups).
const loop = modelSet("loop", storeDir, THREADS);
await judgeStage(loop.set, (await redTeamStage(loop.set, 2)).attempts); // warm-up: loads the model, builds the grammar
const generationPath = GENERATION === "auto" ? (nativeToolBuilt("iteralign-generate") ? "native" : "engine") : GENERATION;
// The red-team stage on the engine path (node-llama-cpp samples), run between the same runs, for comparison.
const engineLoop = modelSet("loop-engine", storeDir, THREADS, "engine");
await redTeamStage(engineLoop.set, 2);
const recorded: Recorded[] = [];
const redTeamRuns: StageFigures[] = [];
const engineRedTeamRuns: StageFigures[] = [];
const judgeRuns: StageFigures[] = [];
let attempts: Attempt[] = [];
for (let r = 0; r < RUNS; r++) {
  const rt = await redTeamStage(loop.set, PROMPTS);
  redTeamRuns.push(rt.figures);
  attempts = rt.attempts;
  judgeRuns.push(await judgeStage(loop.set, attempts, r === 0 ? recorded : undefined));
  engineRedTeamRuns.push((await redTeamStage(engineLoop.set, PROMPTS)).figures);
}
await loop.set.close();
loop.store.close();
await engineLoop.set.close();
engineLoop.store.close();
log(`loop red-team (${generationPath} generation): ${JSON.stringify(redTeamRuns)}\nloop red-team (engine generation): ${JSON.stringify(engineRedTeamRuns)}\nloop judge: ${JSON.stringify(judgeRuns)}`);
const aggregate = (f: StageFigures): number => (f.promptTokens + f.tokens) / f.seconds;
const generated = (f: StageFigures): number => f.tokens / f.seconds;

// 2. llama-batched-bench at the red-team stage's shape: sequences in one group, mean prompt and answer lengths.
const group = Math.min(PROMPTS, SEQUENCES);
const meanPrompt = Math.round(median(redTeamRuns.map((f) => f.promptTokens)) / PROMPTS);
const meanAnswer = Math.max(1, Math.round(median(redTeamRuns.map((f) => f.tokens)) / PROMPTS));
const batchedBench = (await ensureLlamaBuild({ targets: ["llama-batched-bench"], onLine: () => undefined })).binaries["llama-batched-bench"] as string;
async function runBatchedBench(): Promise<{ total: number; pp: number; tg: number }> {
  const argv = ["-m", file, "-c", String(group * (meanPrompt + meanAnswer) + 64), "-npp", String(meanPrompt), "-ntg", String(meanAnswer), "-npl", String(group), "-t", String(THREADS), "-fa", "off"];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(batchedBench, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr.on("data", (d: Buffer) => (text += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`llama-batched-bench exited ${code}: ${text.slice(-2000)}`))));
  });
  // | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
  const row = out.split("\n").find((l) => new RegExp(`^\\|\\s*${meanPrompt}\\s*\\|\\s*${meanAnswer}\\s*\\|\\s*${group}\\s*\\|`).test(l));
  if (!row) throw new Error(`no result row in llama-batched-bench output:\n${out.slice(-2000)}`);
  const cells = row.split("|").map((c) => c.trim()).filter((c) => c.length > 0).map(Number);
  return { pp: cells[5] as number, tg: cells[7] as number, total: cells[9] as number };
}
await runBatchedBench(); // warm-up (page cache)
const batchedRuns: Array<{ total: number; pp: number; tg: number }> = [];
for (let r = 0; r < RUNS; r++) batchedRuns.push(await runBatchedBench());
log(`llama-batched-bench (pp ${meanPrompt}, tg ${meanAnswer}, ${group} sequences): ${JSON.stringify(batchedRuns)}`);

// 3. llama-server: the judge stage's recorded requests, all at once, with the JSON schema as response_format.
const server = await startLlamaServer({ modelPath: file, parallel: SEQUENCES, ctxSize: CONTEXT * SEQUENCES, threads: THREADS, extraArgs: ["-fa", "off"] });
async function serverStage(): Promise<StageFigures> {
  const start = performance.now();
  const usages = await Promise.all(
    recorded.map(async (r) => {
      const res = await fetch(`${server.baseUrl}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "m",
          messages: r.messages,
          temperature: 0,
          max_tokens: r.params.maxTokens,
          response_format: { type: "json_schema", json_schema: { name: "verdict", schema: r.jsonSchema } },
        }),
      });
      if (!res.ok) throw new Error(`llama-server answered ${res.status}: ${await res.text()}`);
      const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
      return body.usage;
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return { seconds, tokens: usages.reduce((s, u) => s + u.completion_tokens, 0), promptTokens: usages.reduce((s, u) => s + u.prompt_tokens, 0) };
}
const serverRuns: StageFigures[] = [];
try {
  await serverStage(); // warm-up
  for (let r = 0; r < RUNS; r++) serverRuns.push(await serverStage());
} finally {
  await server.stop();
}
log(`llama-server judge: ${JSON.stringify(serverRuns)}`);

// 4. Shared-prefix reuse in the judge stage: the same attempts judged by the engine with and without it.
async function judgeWith(prefixReuse: boolean): Promise<{ texts: string[]; stats: LlamaCppModel["promptEvaluation"]; seconds: number; tokens: number[][] }> {
  const model = await LlamaCppModel.load({ model: file, maxThreads: THREADS, sequences: SEQUENCES, contextSize: CONTEXT, prefixReuse: prefixReuse ? { minTokens: 64 } : false });
  try {
    const texts: string[] = [];
    const captured = wrapModel(model, {
      generateObject: async (request, next) => {
        const result = await next(request);
        // Keyed by the request, so answers are compared pairwise whatever order they finish in.
        texts.push(`${JSON.stringify(request.messages)}\u0000${JSON.stringify(result.object)}`);
        return result;
      },
    });
    const start = performance.now();
    await judge(attempts, { judge: captured, iteration: 0, preset: "full", params: JUDGE });
    const seconds = (performance.now() - start) / 1000;
    return { texts: texts.sort(), stats: { ...model.promptEvaluation }, seconds, tokens: recorded.map((r) => model.renderChat(r.messages).tokens) };
  } finally {
    await model.close();
  }
}
const withoutReuse = await judgeWith(false);
const withReuse = await judgeWith(true);
// The bound: per decode group (the recorded requests in arrival order, cut by the context's sequences), the
// group's common prefix once plus every member's own suffix.
let bound = 0;
for (let start = 0; start < withReuse.tokens.length; start += SEQUENCES) {
  const members = withReuse.tokens.slice(start, start + SEQUENCES);
  const prefix = members.length < 2 ? 0 : Math.min(commonPrefixLength(members), Math.min(...members.map((t) => t.length)) - 1);
  bound += prefix + members.reduce((s, t) => s + t.length - prefix, 0);
}
const identical = JSON.stringify(withReuse.texts) === JSON.stringify(withoutReuse.texts);
log(`prefix reuse: without ${JSON.stringify(withoutReuse.stats)} in ${withoutReuse.seconds.toFixed(2)} s; with ${JSON.stringify(withReuse.stats)} in ${withReuse.seconds.toFixed(2)} s; bound ${bound}; identical ${identical}`);

// 5. Threads under load: the red-team stage while one other process keeps a core busy, at each thread count.
async function underLoad<T>(fn: () => Promise<T>): Promise<T> {
  const hog = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 300));
  try {
    return await fn();
  } finally {
    hog.kill("SIGKILL");
  }
}
const threadCounts: Array<number | undefined> = [...new Set([THREADS, Math.max(1, CORES - 1), 1]), undefined];
const threadFigures: Array<{ threads: number | "adaptive"; idle: number; loaded: number }> = [];
for (const threads of threadCounts) {
  const ms = modelSet(`threads-${threads ?? "adaptive"}`, storeDir, threads);
  await redTeamStage(ms.set, 2);
  const idleRuns: number[] = [];
  for (let r = 0; r < RUNS; r++) idleRuns.push(aggregate((await redTeamStage(ms.set, PROMPTS)).figures));
  const idle = median(idleRuns);
  const loaded = await underLoad(async () => {
    // The adaptive budget reads the machine's load each second: give it a warm-up batch under the load.
    if (threads === undefined) await redTeamStage(ms.set, PROMPTS);
    const out: number[] = [];
    for (let r = 0; r < RUNS; r++) out.push(aggregate((await redTeamStage(ms.set, PROMPTS)).figures));
    return median(out);
  });
  await ms.set.close();
  ms.store.close();
  threadFigures.push({ threads: threads ?? "adaptive", idle, loaded });
}
log(`threads: ${JSON.stringify(threadFigures)}`);
rmSync(storeDir, { recursive: true, force: true });

const loopRedTeam = median(redTeamRuns.map(aggregate));
log(`red-team ${generationPath}: ${loopRedTeam.toFixed(0)} tok/s, engine path ${median(engineRedTeamRuns.map(aggregate)).toFixed(0)} tok/s`);
const batchedTotal = median(batchedRuns.map((b) => b.total));
const loopJudge = median(judgeRuns.map(generated));
const serverJudge = median(serverRuns.map(generated));
const fixed = threadFigures.filter((t) => t.threads !== "adaptive");
const bestLoaded = fixed.reduce((best, t) => (t.loaded > best.loaded ? t : best));
const bestIdle = fixed.reduce((best, t) => (t.idle > best.idle ? t : best));
const adaptive = threadFigures.find((t) => t.threads === "adaptive") as { idle: number; loaded: number };
const goals: Goal[] = [
  { name: `red-team stage (${generationPath} generation) vs llama-batched-bench (aggregate tok/s, same shape)`, value: loopRedTeam / batchedTotal, goal: ">= 0.9", holds: loopRedTeam / batchedTotal >= 0.9 },
  { name: "judge stage vs llama-server (generated tok/s, same requests and schema)", value: loopJudge / serverJudge, goal: ">= 1.0", holds: loopJudge / serverJudge >= 1.0 },
  { name: "judge prompt tokens evaluated with prefix reuse / (prefix per group + suffixes)", value: withReuse.stats.evaluatedTokens / bound, goal: "<= 1", holds: withReuse.stats.evaluatedTokens <= bound },
  { name: "judge answers with prefix reuse identical to without (1 = yes)", value: identical ? 1 : 0, goal: "= 1", holds: identical },
  { name: "default (adaptive) threads under load vs the best fixed count under load", value: adaptive.loaded / bestLoaded.loaded, goal: ">= 0.8", holds: adaptive.loaded / bestLoaded.loaded >= 0.8 },
  { name: "default (adaptive) threads idle vs the best fixed count idle", value: adaptive.idle / bestIdle.idle, goal: ">= 0.9", holds: adaptive.idle / bestIdle.idle >= 0.9 },
];
report(
  "loop",
  [
    { name: `loop red-team stage: ${PROMPTS} prompts, ${SEQUENCES} sequences, prompt + generated (median of ${RUNS})`, value: loopRedTeam, unit: "tok/s" },
    { name: `llama-batched-bench: pp ${meanPrompt}, tg ${meanAnswer}, ${group} sequences, S t/s (median of ${RUNS})`, value: batchedTotal, unit: "tok/s" },
    { name: "loop red-team stage: generated only", value: median(redTeamRuns.map(generated)), unit: "tok/s" },
    { name: "loop red-team stage on the engine path (node-llama-cpp sampling): prompt + generated", value: median(engineRedTeamRuns.map(aggregate)), unit: "tok/s" },
    { name: "engine-path red-team stage vs llama-batched-bench", value: median(engineRedTeamRuns.map(aggregate)) / batchedTotal, unit: "x" },
    { name: "llama-batched-bench: S_TG (generation only)", value: median(batchedRuns.map((b) => b.tg)), unit: "tok/s" },
    { name: "loop judge stage: generated", value: loopJudge, unit: "tok/s" },
    { name: `llama-server, ${SEQUENCES} slots, response_format json_schema: generated`, value: serverJudge, unit: "tok/s" },
    { name: "loop judge stage: seconds (median)", value: median(judgeRuns.map((f) => f.seconds)), unit: "s" },
    { name: "llama-server judge requests: seconds (median)", value: median(serverRuns.map((f) => f.seconds)), unit: "s" },
    { name: "judge prompt tokens sent", value: withReuse.stats.promptTokens, unit: "tokens" },
    { name: "judge prompt tokens evaluated without prefix reuse", value: withoutReuse.stats.evaluatedTokens, unit: "tokens" },
    { name: "judge prompt tokens evaluated with prefix reuse", value: withReuse.stats.evaluatedTokens, unit: "tokens" },
    { name: "bound: prefix once per decode group + suffixes", value: bound, unit: "tokens" },
    { name: "judge stage seconds without / with prefix reuse", value: withoutReuse.seconds / withReuse.seconds, unit: "x" },
    ...threadFigures.flatMap((t) => [
      { name: `red-team stage, ${t.threads} thread(s), idle machine`, value: t.idle, unit: "tok/s" },
      { name: `red-team stage, ${t.threads} thread(s), one core-bound process beside it`, value: t.loaded, unit: "tok/s" },
    ]),
    { name: `best fixed thread count under load: ${bestLoaded.threads}`, value: bestLoaded.loaded, unit: "tok/s" },
  ],
  goals,
  { model: "bench-qwen2-100m", cores: CORES, threads: THREADS, prompts: PROMPTS, sequences: SEQUENCES, runs: RUNS, generationPath, redTeamRuns, engineRedTeamRuns, judgeRuns, batchedRuns, serverRuns, prefixReuse: { without: withoutReuse.stats, with: withReuse.stats, bound, identical }, threadFigures },
);
