/**
 * Loop benchmark on the ~100M generated model (152k vocabulary): throughput (generated tokens per second) of
 * the loop's red-team + judge stages, as the loop runs them (iteralign's stage functions over the configured
 * models, with middleware, call log and lockstep decode groups), against
 *  - a serial loop: the same stages, engine and prompts, one model call at a time (goal: loop >= 3x);
 *  - raw batched generation: node-llama-cpp alone, the same prompt tokens, sampling settings and JSON grammar,
 *    all sequences of a stage decoded concurrently with no framework around it (goal: loop >= 0.9x).
 * Both stages use the same model (target and judge), as a one-model setup on a laptop would.
 * Usage: npm run bench:loop [-- --prompts N --sequences S --runs R --serial-prompts M]
 */
import { mkdtempSync, rmSync } from "node:fs";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { LlamaGrammarEvaluationState, type LlamaContextSequence, type LlamaGrammar, type Token } from "node-llama-cpp";
import { parseConfig } from "../src/config/load-config.js";
import { loadBundled } from "../src/datasets/bundled.js";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { getEngine, acquireModel } from "../src/providers/llama-cpp/engine.js";
import { toGrammarSchema } from "../src/providers/llama-cpp/json-schema-grammar.js";
import { LlamaCppModel } from "../src/providers/llama-cpp/llama-cpp-model.js";
import { wrapModel } from "../src/providers/middleware/wrap.js";
import { ModelSet } from "../src/providers/registry.js";
import type { ChatMessage, GenerationParams, JsonSchema, LanguageModel } from "../src/spec/language-model.js";
import { judge, okRecords, redTeam } from "../src/stages/index.js";
import { SqliteRunStore } from "../src/store/sqlite-run-store.js";
import { z } from "zod";
import { median, report, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const PROMPTS = arg("prompts", 16);
const SEQUENCES = arg("sequences", 16);
const RUNS = arg("runs", 3);
const SERIAL_PROMPTS = arg("serial-prompts", 8);
const THREADS = Math.min(os.availableParallelism(), 4);
const RED_TEAM: GenerationParams = { temperature: 0, maxTokens: 64, frequencyPenalty: 0.5 };
/** Room for a random-weight judge, which fills every string of the verdict to its maximum length. */
const JUDGE: GenerationParams = { temperature: 0, maxTokens: 1024 };
const CONTEXT = 1536;

const file = ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
const prompts = (await loadBundled("harmfulqa")).slice(0, PROMPTS);
process.stderr.write(`model ${file}, ${THREADS} threads, ${PROMPTS} prompts, ${SEQUENCES} sequences\n`);

/** One recorded model call of the loop: what the raw baseline replays. */
interface Recorded {
  readonly messages: readonly ChatMessage[];
  readonly params: GenerationParams;
  readonly jsonSchema?: JsonSchema;
}

function modelSet(name: string, concurrency: number | undefined, storeDir: string): { set: ModelSet; store: SqliteRunStore } {
  const config = parseConfig({
    models: {
      m: {
        provider: "llama-cpp",
        model: file,
        contextSize: CONTEXT,
        sequences: concurrency === 1 ? 1 : SEQUENCES,
        ...(concurrency !== undefined ? { concurrency } : {}),
      },
    },
    roles: { target: "m", oracle: "m" },
    engine: { maxThreads: THREADS },
    // Every run does the engine work: no answers from the cache.
    cache: { enabled: false },
  });
  const store = new SqliteRunStore(path.join(storeDir, `${name}.db`));
  store.createRun({ id: name, configJson: "{}", configHash: name, createdAt: new Date().toISOString() });
  return { set: new ModelSet({ config, baseDir: process.cwd(), callLog: store, runId: name }), store };
}

/** Records the requests a model receives. */
function recording(model: LanguageModel, into: Recorded[]): LanguageModel {
  return wrapModel(model, {
    generate: (request, next) => {
      const { messages, signal: _s, onText: _o, ...params } = request;
      into.push({ messages, params });
      return next(request);
    },
    generateObject: (request, next) => {
      const { messages, signal: _s, schema, jsonSchema, schemaName: _n, ...params } = request;
      into.push({ messages, params, jsonSchema: jsonSchema ?? z.toJSONSchema(schema) });
      return next(request);
    },
  });
}

/** Red team then judge over `count` prompts through the stage functions; returns seconds and generated tokens. */
interface StagesRun {
  readonly seconds: number;
  readonly tokens: number;
  /** Per stage: seconds, generated tokens, prompt tokens. */
  readonly redTeam: { seconds: number; tokens: number; promptTokens: number };
  readonly judge: { seconds: number; tokens: number; promptTokens: number };
}

async function stages(set: ModelSet, count: number, record?: Recorded[]): Promise<StagesRun> {
  const target = await set.forRole("target");
  const judgeModel = await set.forRole("judge");
  const totals = (): { completionTokens: number; promptTokens: number } => set.meter.snapshot().totals;
  const t0 = totals();
  const start = performance.now();
  const attempts = okRecords(
    await redTeam(prompts.slice(0, count), { target: record ? recording(target, record) : target, iteration: 0, params: RED_TEAM }),
  );
  const t1 = totals();
  const mid = performance.now();
  const verdicts = await judge(attempts, { judge: record ? recording(judgeModel, record) : judgeModel, iteration: 0, preset: "full", params: JUDGE });
  const end = performance.now();
  const t2 = totals();
  // A failed call's tokens are not metered: every call must succeed for tokens/s to be comparable.
  const failed = verdicts.length - okRecords(verdicts).length;
  if (failed > 0) throw new Error(`${failed} judge calls failed; raise the judge's maxTokens`);
  return {
    seconds: (end - start) / 1000,
    tokens: t2.completionTokens - t0.completionTokens,
    redTeam: { seconds: (mid - start) / 1000, tokens: t1.completionTokens - t0.completionTokens, promptTokens: t1.promptTokens - t0.promptTokens },
    judge: { seconds: (end - mid) / 1000, tokens: t2.completionTokens - t1.completionTokens, promptTokens: t2.promptTokens - t1.promptTokens },
  };
}

const log = (m: string): void => void process.stderr.write(`${m}\n`);
const storeDir = mkdtempSync(path.join(tmpdir(), "iteralign-bench-loop-"));

// 1. The loop's stages, all of a batch in flight together.
const loop = modelSet("loop", undefined, storeDir);
const recorded: Recorded[] = [];
await stages(loop.set, 2); // warm-up: loads the model, builds the grammar
log("warm");
const loopRuns: StagesRun[] = [];
for (let r = 0; r < RUNS; r++) loopRuns.push(await stages(loop.set, PROMPTS, r === 0 ? recorded : undefined));
await loop.set.close();
loop.store.close();

log(`loop: ${JSON.stringify(loopRuns)}`);
// 2. Serial: the same stages, one model call at a time (concurrency 1, one sequence).
const serial = modelSet("serial", 1, storeDir);
await stages(serial.set, 1);
const serialRun = await stages(serial.set, SERIAL_PROMPTS);
await serial.set.close();
serial.store.close();

log(`serial: ${JSON.stringify(serialRun)}`);
// 3. Raw node-llama-cpp: the recorded requests' prompt tokens, decoded concurrently per stage.
const renderer = await LlamaCppModel.load({ model: file, maxThreads: THREADS, sequences: 1, contextSize: CONTEXT });
const llama = await getEngine({ maxThreads: THREADS });
const handle = await acquireModel(file, { maxThreads: THREADS });
const rawContext = await handle.model.createContext({ sequences: SEQUENCES, contextSize: CONTEXT, flashAttention: false, threads: THREADS });
const grammars = new Map<string, LlamaGrammar>();
async function grammarFor(schema: JsonSchema): Promise<LlamaGrammar> {
  const key = JSON.stringify(schema);
  let g = grammars.get(key);
  if (!g) {
    g = await llama.createGrammarForJsonSchema(toGrammarSchema(schema) as Parameters<typeof llama.createGrammarForJsonSchema>[0]);
    grammars.set(key, g);
  }
  return g;
}

// Prompts are evaluated one sequence at a time, then every sequence decodes concurrently in node-llama-cpp's own
// batches. With several prompts in one batch node-llama-cpp was seen handing a sequence another request's first
// token (see LockstepBarrier): the baseline must generate the same answers as the loop, or its tokens/s would
// count a different workload.
let prefillChain: Promise<void> = Promise.resolve();
function jsonComplete(text: string): boolean {
  const trimmed = text.trimEnd();
  if (!trimmed.endsWith("}") && !trimmed.endsWith("]")) return false;
  try {
    JSON.parse(trimmed);
    return true;
  } catch {
    return false;
  }
}
async function rawDecode(seq: LlamaContextSequence, request: Recorded): Promise<number> {
  const { tokens, stopTokens } = renderer.renderChat(request.messages);
  let prefillDone!: () => void;
  const myTurn = prefillChain;
  prefillChain = new Promise<void>((resolve) => (prefillDone = resolve));
  await myTurn;
  const grammar = request.jsonSchema ? await grammarFor(request.jsonSchema) : undefined;
  const state = grammar ? new LlamaGrammarEvaluationState({ model: handle.model, grammar }) : undefined;
  const generated: Token[] = [];
  const max = request.params.maxTokens ?? 512;
  const freq = request.params.frequencyPenalty ?? 0;
  for await (const token of seq.evaluate(tokens, {
    temperature: 0,
    ...(state ? { grammarEvaluationState: state } : {}),
    ...(freq !== 0 ? { repeatPenalty: { punishTokens: () => generated, maxPunishTokens: max, penalty: 1, frequencyPenalty: freq } } : {}),
  })) {
    prefillDone();
    if (stopTokens.has(token) || handle.model.isEogToken(token)) break;
    generated.push(token);
    if (generated.length >= max) break;
    // As the engine does: a complete JSON value ends a grammar-constrained answer (the grammar would allow only
    // trailing whitespace after it).
    if (state && jsonComplete(handle.model.detokenize(generated))) break;
  }
  prefillDone();
  await seq.clearHistory();
  return generated.length;
}

// The context's sequences, taken once: a disposed sequence is not free again at once.
const rawSequences = Array.from({ length: SEQUENCES }, () => rawContext.getSequence());
async function rawStage(requests: readonly Recorded[]): Promise<number> {
  let next = 0;
  let tokens = 0;
  await Promise.all(
    rawSequences.slice(0, Math.min(SEQUENCES, requests.length)).map(async (seq) => {
      for (let i = next++; i < requests.length; i = next++) {
        // Not `tokens += await ...`: that reads `tokens` before the await and loses the other workers' counts.
        const n = await rawDecode(seq, requests[i] as Recorded);
        tokens += n;
      }
    }),
  );
  return tokens;
}

const redTeamRequests = recorded.filter((r) => !r.jsonSchema);
const judgeRequests = recorded.filter((r) => r.jsonSchema);
if (redTeamRequests.length !== PROMPTS || judgeRequests.length === 0) throw new Error(`recorded ${recorded.length} requests`);
await rawStage(redTeamRequests.slice(0, 2)); // warm-up
const rawRuns: Array<{ seconds: number; tokens: number; redTeam: { seconds: number; tokens: number }; judge: { seconds: number; tokens: number } }> = [];
for (let r = 0; r < RUNS; r++) {
  const start = performance.now();
  const redTeamTokens = await rawStage(redTeamRequests);
  const mid = performance.now();
  const judgeTokens = await rawStage(judgeRequests);
  const end = performance.now();
  rawRuns.push({
    seconds: (end - start) / 1000,
    tokens: redTeamTokens + judgeTokens,
    redTeam: { seconds: (mid - start) / 1000, tokens: redTeamTokens },
    judge: { seconds: (end - mid) / 1000, tokens: judgeTokens },
  });
}
log(`raw: ${JSON.stringify(rawRuns)}`);
await rawContext.dispose();
await handle.release();
await renderer.close();
rmSync(storeDir, { recursive: true, force: true });

const rate = (r: { seconds: number; tokens: number }): number => r.tokens / r.seconds;
const loopTps = median(loopRuns.map(rate));
const serialTps = rate(serialRun);
const rawTps = median(rawRuns.map(rate));
const goals: Goal[] = [
  { name: "loop vs serial one-call-at-a-time (red-team + judge tok/s)", value: loopTps / serialTps, goal: ">= 3", holds: loopTps / serialTps >= 3 },
  { name: "loop vs raw node-llama-cpp batched generation", value: loopTps / rawTps, goal: ">= 0.9", holds: loopTps / rawTps >= 0.9 },
];
report(
  "loop",
  [
    { name: `loop: red-team + judge, ${PROMPTS} prompts, ${SEQUENCES} sequences (median of ${RUNS})`, value: loopTps, unit: "tok/s" },
    { name: "loop: seconds per batch (median)", value: median(loopRuns.map((r) => r.seconds)), unit: "s" },
    { name: "loop: generated tokens per batch", value: median(loopRuns.map((r) => r.tokens)), unit: "tokens" },
    { name: "loop: red-team stage alone (median)", value: median(loopRuns.map((r) => r.redTeam.tokens / r.redTeam.seconds)), unit: "tok/s" },
    { name: "loop: judge stage alone (median)", value: median(loopRuns.map((r) => r.judge.tokens / r.judge.seconds)), unit: "tok/s" },
    { name: "loop: judge prompt tokens per generated token", value: median(loopRuns.map((r) => r.judge.promptTokens / r.judge.tokens)), unit: "" },
    { name: `serial: one call at a time (${SERIAL_PROMPTS} prompts)`, value: serialTps, unit: "tok/s" },
    { name: "serial: red-team stage alone", value: serialRun.redTeam.tokens / serialRun.redTeam.seconds, unit: "tok/s" },
    { name: "serial: judge stage alone", value: serialRun.judge.tokens / serialRun.judge.seconds, unit: "tok/s" },
    { name: `raw node-llama-cpp, ${SEQUENCES} sequences (median of ${RUNS})`, value: rawTps, unit: "tok/s" },
    { name: "raw: generated tokens per batch (the loop's answers, replayed)", value: median(rawRuns.map((r) => r.tokens)), unit: "tokens" },
    { name: "raw: red-team stage alone (median)", value: median(rawRuns.map((r) => r.redTeam.tokens / r.redTeam.seconds)), unit: "tok/s" },
    { name: "raw: judge stage alone (median)", value: median(rawRuns.map((r) => r.judge.tokens / r.judge.seconds)), unit: "tok/s" },
  ],
  goals,
  { model: "bench-qwen2-100m", threads: THREADS, prompts: PROMPTS, sequences: SEQUENCES, runs: RUNS, loopRuns, serialRun, rawRuns },
);
