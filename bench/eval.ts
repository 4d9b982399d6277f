/**
 * TruthfulQA MC1 scoring benchmark on the ~100M generated model (152k vocabulary), all 817 questions by default:
 * (a) MC1 scoring as the benchmark does it (`runMultipleChoice`, the core `truthfulqaBenchmark` runs, on the
 *     native scorer: each context once, all choices batched after it, only the needed log-softmax read, and the
 *     whole 32-token chunks a context shares with the previous question's, i.e. the few-shot primer, reused);
 * (b) plain evaluation of the same tokens with no log-probabilities read, on a second process of the same scorer
 *     binary: each question's context followed by every continuation's tokens but the last, decoded from empty
 *     memory as one sequence in batches of up to 512 tokens with logits at its last position only (the scorer's
 *     one-token-continuation case) — every token evaluated, same threads (goal: (a) <= 1.5x (b));
 *     `--node-baseline` adds the same tokens plainly evaluated by node-llama-cpp, for information;
 * (c) every choice scored with its full context separately (one fresh scorer request per choice, the context
 *     evaluated once per choice) against (a) on the same sample of questions (goal: >= 2x), also extrapolated to
 *     the whole set and labelled as such; (a') the shared-context scoring without reuse between questions, on
 *     the same sample, shows what the reuse saves;
 * (d) fast path (native scorer) vs reference path (node-llama-cpp probability maps, `scoring: "engine"`):
 *     per-choice log-likelihoods on a sample (goal: within 1e-3).
 * (a)/(b) and (a)/(a')/(c) run interleaved in chunks of questions, rotating which goes first, so a machine shared
 * with other work slows every side alike.
 *
 * Usage: npm run bench:eval [-- --limit N --chunk C --separate-sample S --reference-sample R --threads T --node-baseline]
 */
import os from "node:os";
import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { ensureFixtureModels, FIXTURE_MODELS } from "../src/gguf/fixture-models.js";
import { loadTruthfulqa, truthfulqaBenchmark, truthfulqaItems } from "../src/eval/truthfulqa.js";
import { mcMetrics, runMultipleChoice, type McItem, type McOutcome } from "../src/eval/multiple-choice.js";
import { LlamaCppModel } from "../src/providers/llama-cpp/llama-cpp-model.js";
import { NativeScorer, type NativeScoring } from "../src/providers/llama-cpp/native-scorer.js";
import { tokenizeForScoring } from "../src/providers/llama-cpp/scoring.js";
import type { SequencePool } from "../src/providers/llama-cpp/sequence-pool.js";
import { report, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
};
const TOTAL = 817;
const LIMIT = Math.min(arg("limit", TOTAL), TOTAL);
const CHUNK = arg("chunk", 10);
const SEPARATE_SAMPLE = Math.min(arg("separate-sample", 40), LIMIT);
const REFERENCE_SAMPLE = Math.min(arg("reference-sample", 4), LIMIT);
const THREADS = arg("threads", Math.min(os.availableParallelism(), 4));
const NODE_BASELINE = args.includes("--node-baseline");
const SEQUENCES = 4;
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const seconds = (start: number): number => (performance.now() - start) / 1000;

const file = ensureFixtureModels(["bench-qwen2-100m"], { log })["bench-qwen2-100m"]!;
log(`model ${file}, ${THREADS} threads, ${LIMIT} questions, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
const loadStart = os.loadavg();

const model = await LlamaCppModel.load({ model: file, maxThreads: THREADS, sequences: SEQUENCES, contextSize: 2048 });
const scoringPath = model.scoringPath;
if (scoringPath !== "native") log("warning: the native scorer is not built (npm run build:llama -- iteralign-scorer); (a) uses the engine path");
const internals = model as unknown as { model: LlamaModel; pool: SequencePool };

const questions = await loadTruthfulqa();
const items: McItem[] = truthfulqaItems(questions, ["mc1"]).slice(0, LIMIT);
const requests = items.map((item) => ({ context: item.context, continuations: item.choices.map((c) => ` ${c}`) }));
const tokens = requests.map((r) => tokenizeForScoring(internals.model, r));
const contextTokens = tokens.reduce((a, t) => a + t.context.length, 0);
const continuationTokens = tokens.reduce((a, t) => a + t.continuations.reduce((b, c) => b + c.length, 0), 0);
// What the scorer evaluates: each context once, each continuation but its last token.
const evaluatedTokens = tokens.reduce((a, t) => a + t.context.length + t.continuations.reduce((b, c) => b + c.length - 1, 0), 0);
const choices = items.reduce((a, i) => a + i.choices.length, 0);
log(`${choices} choices; ${contextTokens} context + ${continuationTokens} continuation tokens; ${evaluatedTokens} evaluated`);

const native = (model as unknown as { native(): NativeScoring }).native();
// The scorer reports the milliseconds it spent computing log-softmax from logits (readMs): summed here to show
// what reading log-probabilities costs inside (a), apart from the model's own work.
let scorerReadMs = 0;
const nativeScore = native.score.bind(native);
let scorerReused = 0;
native.score = async (...callArgs: Parameters<NativeScoring["score"]>) => {
  const r = await nativeScore(...callArgs);
  scorerReadMs += r?.readMs ?? 0;
  scorerReused += r?.reusedTokens ?? 0;
  return r;
};
/** The vocabulary size the scorer reports (its process is running by now). */
async function nVocabOf(n: NativeScoring): Promise<number> {
  const scorer = await (n as unknown as { scorer: Promise<{ nVocab: number }> }).scorer;
  return scorer.nVocab;
}
type Tokens = (typeof tokens)[number];
/**
 * (b) runs on a second scorer process of the same binary whose chunk is the whole batch: plain evaluation in
 * batches of up to 512 tokens, from empty memory every time (`fresh`), so nothing is reused between questions.
 */
const plain = await NativeScorer.start({ modelFile: file, contextSize: 2048, threads: THREADS, sequences: SEQUENCES, chunk: 512 });
/** (b): the context and every continuation but its last token as one sequence, one logit row read. */
async function plainScorer(t: Tokens): Promise<void> {
  const sequence = [...t.context, ...t.continuations.flatMap((c) => c.slice(0, -1))];
  const r = await plain.score(sequence, [[t.continuations[0]![0]!]], undefined, { fresh: true });
  if (r.promptTokens !== sequence.length || r.reusedTokens !== 0) throw new Error("the plain evaluation did not evaluate every token");
}
/** (a'): as (a), but every question's context evaluated from empty memory (no reuse of the primer). */
async function noReuseScorer(t: Tokens): Promise<void> {
  const r = await native.score(t, undefined, { fresh: true });
  if (!r || r.reusedTokens !== 0) throw new Error("the no-reuse scoring did not run on the native scorer");
}
/** node-llama-cpp: context once, each continuation but its last token after it, erased before the next. */
async function plainNode(t: Tokens): Promise<void> {
  await internals.pool.with(async (seq) => {
    await seq.evaluateWithoutGeneratingNewTokens(t.context);
    for (const cont of t.continuations) {
      if (cont.length < 2) continue;
      await seq.evaluateWithoutGeneratingNewTokens(cont.slice(0, -1));
      await seq.eraseContextTokenRanges([{ start: t.context.length, end: t.context.length + cont.length - 1 }]);
    }
  });
}
async function runAll<T>(list: readonly T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < list.length) await fn(list[next++] as T);
    }),
  );
}
const scoreChunk = (chunk: readonly McItem[]): Promise<McOutcome[]> =>
  runMultipleChoice(model, chunk, { benchmark: "truthfulqa", mode: "loglik" });

// Warm-up outside the timings: starts the scorer process, touches the weights in both processes.
await model.scoreContinuations(requests[0]!);
await plainScorer(tokens[0]!);

// (a) and (b), interleaved chunk by chunk.
log(`(a) MC1 scoring and (b) plain evaluation, interleaved in chunks of ${CHUNK} ...`);
const outcomes: McOutcome[] = [];
let mcTime = 0;
let plainTime = 0;
let nodeTime = 0;
let mcReadMs = 0;
let mcReused = 0;
for (let k = 0; k * CHUNK < LIMIT; k++) {
  const lo = k * CHUNK;
  const chunkItems = items.slice(lo, lo + CHUNK);
  const chunkTokens = tokens.slice(lo, lo + CHUNK);
  const phases: Array<() => Promise<void>> = [
    async () => {
      const t0 = performance.now();
      const read0 = scorerReadMs;
      const reused0 = scorerReused;
      outcomes.push(...(await scoreChunk(chunkItems)));
      mcTime += seconds(t0);
      mcReadMs += scorerReadMs - read0;
      mcReused += scorerReused - reused0;
    },
    async () => {
      const t0 = performance.now();
      for (const t of chunkTokens) await plainScorer(t);
      plainTime += seconds(t0);
    },
  ];
  if (k % 2 === 1) phases.reverse();
  for (const phase of phases) await phase();
  if ((lo + CHUNK) % 100 < CHUNK || lo + CHUNK >= LIMIT) {
    log(`  ${Math.min(lo + CHUNK, LIMIT)}/${LIMIT}: (a) ${mcTime.toFixed(1)} s, (b) ${plainTime.toFixed(1)} s, load ${os.loadavg()[0]!.toFixed(1)}`);
  }
}
const mc1 = mcMetrics(outcomes, "loglik", { mc1Name: "mc1", mc2: false, byCategory: false })[0]!;

// The benchmark itself on a few questions: the same outcomes as the core run above.
const check = await truthfulqaBenchmark({ metrics: ["mc1"] }).run({ model }, { mode: "loglik", limit: Math.min(CHUNK, LIMIT) });
check.items.forEach((item, i) => {
  if (item.prediction !== outcomes[i]!.prediction) throw new Error(`benchmark and core disagree on item ${item.id}`);
});

// (c) Each choice with its full context, separately (from empty memory: nothing reused), against (a), and (a')
// the shared context without reuse between questions, interleaved on the sample.
log(`(c) separate full contexts vs shared context on ${SEPARATE_SAMPLE} questions ...`);
let separateTime = 0;
let sharedSampleTime = 0;
let noReuseTime = 0;
for (let k = 0; k * CHUNK < SEPARATE_SAMPLE; k++) {
  const lo = k * CHUNK;
  const hi = Math.min(lo + CHUNK, SEPARATE_SAMPLE);
  const phases: Array<() => Promise<void>> = [
    async () => {
      const t0 = performance.now();
      for (const t of tokens.slice(lo, hi)) {
        for (const c of t.continuations) {
          const r = await native.score({ context: t.context, continuations: [c] }, undefined, { fresh: true });
          if (!r) throw new Error("the separate scoring did not run on the native scorer");
        }
      }
      separateTime += seconds(t0);
    },
    async () => {
      const t0 = performance.now();
      for (const t of tokens.slice(lo, hi)) await noReuseScorer(t);
      noReuseTime += seconds(t0);
    },
    async () => {
      const t0 = performance.now();
      await scoreChunk(items.slice(lo, hi));
      sharedSampleTime += seconds(t0);
    },
  ];
  // Rotate which goes first, so a machine shared with other work slows all three alike.
  for (let j = 0; j < k % phases.length; j++) phases.push(phases.shift()!);
  for (const phase of phases) await phase();
}
const separateSpeedup = separateTime / sharedSampleTime;
log(`  separate ${separateTime.toFixed(1)} s, shared ${sharedSampleTime.toFixed(1)} s, shared without reuse ${noReuseTime.toFixed(1)} s`);

// (b') node-llama-cpp, last: its in-process evaluation threads were seen to slow the scorer process that runs
// after them on a 2-core machine, so it must not be interleaved with the timings above.
if (NODE_BASELINE) {
  log("(b') plain evaluation of the same tokens through node-llama-cpp ...");
  await plainNode(tokens[0]!);
  const t0 = performance.now();
  await runAll(tokens, SEQUENCES, plainNode);
  nodeTime = seconds(t0);
}

// (d) Fast path vs the node-llama-cpp reference path on a sample: per-choice log-likelihoods.
log(`(d) reference path (node-llama-cpp probability maps) on ${REFERENCE_SAMPLE} questions ...`);
const engine = await LlamaCppModel.load({ model: file, maxThreads: THREADS, sequences: 1, contextSize: 2048, scoring: "engine" });
let maxDiff = 0;
let tokenCountMismatches = 0;
let referenceChoices = 0;
const refStart = performance.now();
for (const [i, r] of requests.slice(0, REFERENCE_SAMPLE).entries()) {
  const reference = await engine.scoreContinuations(r);
  const fast = outcomes[i]!.scores!;
  reference.scores.forEach((s, j) => {
    referenceChoices++;
    maxDiff = Math.max(maxDiff, Math.abs(s.logprob - fast[j]!.logprob));
    if (s.tokenCount !== fast[j]!.tokenCount) tokenCountMismatches++;
  });
}
const referenceTime = seconds(refStart);
await engine.close();
const scorerVocab = await nVocabOf(native);
await plain.close();
await model.close();

// The output layer's share of the work: scoring needs the logits (a vocabulary-sized matrix product) at every
// continuation position, plain evaluation at one position per question. Multiply-adds per token from the model's
// shape (attention over the context left out: under 10% of a token's work at these lengths).
const spec = FIXTURE_MODELS["bench-qwen2-100m"];
const headDim = spec.embeddingLength / spec.headCount;
const bodyPerToken =
  spec.blockCount *
  (2 * spec.embeddingLength * spec.embeddingLength +
    2 * spec.embeddingLength * headDim * spec.headCountKv +
    3 * spec.embeddingLength * spec.feedForwardLength);
const headPerToken = spec.embeddingLength * scorerVocab;
const extraLogitRows = tokens.reduce((a, t) => a + t.continuations.reduce((b, c) => b + c.length - 1, 0), 0);
const plainMacs = evaluatedTokens * bodyPerToken + LIMIT * headPerToken;
const floorRatio = (evaluatedTokens * bodyPerToken + (LIMIT + extraLogitRows) * headPerToken) / plainMacs;
// The same with the context tokens (a) reused from the previous question instead of evaluating them.
const floorRatioReused = ((evaluatedTokens - mcReused) * bodyPerToken + (LIMIT + extraLogitRows) * headPerToken) / plainMacs;
const perQuestion = mcTime / LIMIT;
const ratio = mcTime / plainTime;
// Whole-set figures from samples, labelled EXTRAPOLATED wherever they are shown.
const separateFull = (separateTime / SEPARATE_SAMPLE) * TOTAL;
const mcFull = perQuestion * TOTAL;
const goals: Goal[] = [
  {
    name: `MC1 scoring (${scoringPath}, primer reused) / plain evaluation of every token, no log-probabilities (${LIMIT} questions)`,
    value: ratio,
    goal: "<= 1.5",
    holds: ratio <= 1.5,
  },
  {
    name: `speedup vs each choice with its full context separately (same ${SEPARATE_SAMPLE} questions)`,
    value: separateSpeedup,
    goal: ">= 2",
    holds: separateSpeedup >= 2,
  },
  {
    name: `max |fast - reference| per-choice log-likelihood, in 1e-3 nats (${referenceChoices} choices)`,
    value: maxDiff / 1e-3,
    goal: "<= 1",
    holds: maxDiff <= 1e-3 && tokenCountMismatches === 0,
  },
];
const partial = LIMIT < TOTAL ? `, EXTRAPOLATED from ${LIMIT} questions` : "";
report(
  "eval",
  [
    { name: `(a) MC1 scoring, ${LIMIT} questions (${scoringPath} scorer)`, value: mcTime, unit: "s" },
    { name: "(a) per question", value: perQuestion * 1000, unit: "ms" },
    { name: `(a) MC1 scoring, all ${TOTAL} questions${partial}`, value: mcFull, unit: "s" },
    { name: `(a) evaluated tokens per second (${evaluatedTokens} tokens)`, value: evaluatedTokens / mcTime, unit: "tok/s" },
    { name: "(a) of which computing log-softmax from logits (reading), in the scorer", value: mcReadMs / 1000, unit: "s" },
    { name: "(a) reading share of MC1 scoring time", value: mcReadMs / 1000 / mcTime, unit: "" },
    { name: "(a) context tokens reused from the previous question (the shared primer), per question", value: mcReused / LIMIT, unit: "tokens" },
    { name: `(b) plain evaluation of the same ${evaluatedTokens} tokens, scorer binary, no log-probabilities`, value: plainTime, unit: "s" },
    { name: "(b) tokens per second", value: evaluatedTokens / plainTime, unit: "tok/s" },
    ...(NODE_BASELINE
      ? [
          { name: `(b') plain evaluation of the same tokens, node-llama-cpp, ${SEQUENCES} sequences`, value: nodeTime, unit: "s" },
          { name: "(b') tokens per second", value: evaluatedTokens / nodeTime, unit: "tok/s" },
        ]
      : []),
    { name: `(c) each choice with its full context separately, ${SEPARATE_SAMPLE} questions`, value: separateTime, unit: "s" },
    { name: `(c) shared context (as (a)), the same ${SEPARATE_SAMPLE} questions`, value: sharedSampleTime, unit: "s" },
    { name: `(a') shared context without reuse of the primer between questions, the same ${SEPARATE_SAMPLE} questions`, value: noReuseTime, unit: "s" },
    { name: "(a') / (a) on that sample: what reusing the primer saves", value: noReuseTime / sharedSampleTime, unit: "x" },
    { name: `(c) separately, all ${TOTAL} questions, EXTRAPOLATED from ${SEPARATE_SAMPLE}`, value: separateFull, unit: "s" },
    { name: `(d) reference path (node-llama-cpp probability maps), ${REFERENCE_SAMPLE} questions`, value: referenceTime, unit: "s" },
    { name: "(d) max |native - reference| per-choice log-likelihood", value: maxDiff * 1e6, unit: "µnats" },
    { name: "(d) token-count mismatches", value: tokenCountMismatches, unit: "choices" },
    { name: `MC1 of the random-weight model (${LIMIT} questions)`, value: mc1.value, unit: "" },
    { name: "floor of (a)/(b) without reuse: multiply-adds with logits at every scored position / with one per question", value: floorRatio, unit: "x" },
    { name: "floor of (a)/(b) with the measured reuse (reused context tokens not evaluated)", value: floorRatioReused, unit: "x" },
    { name: "body / output layer multiply-adds per token", value: bodyPerToken / headPerToken, unit: "" },
  ],
  goals,
  {
    model: path.basename(file),
    threads: THREADS,
    sequences: SEQUENCES,
    questions: LIMIT,
    chunk: CHUNK,
    choices,
    contextTokens,
    continuationTokens,
    evaluatedTokens,
    scoringPath,
    seconds: { mc1: mcTime, plain: plainTime, ...(NODE_BASELINE ? { plainNode: nodeTime } : {}), separate: separateTime, sharedSample: sharedSampleTime, sharedSampleNoReuse: noReuseTime, reference: referenceTime },
    reusedContextTokens: mcReused,
    extrapolated: LIMIT < TOTAL ? { from: LIMIT, mc1SecondsAllQuestions: mcFull } : null,
    separateSample: SEPARATE_SAMPLE,
    separateSecondsAllQuestionsExtrapolated: separateFull,
    referenceSample: REFERENCE_SAMPLE,
    referenceSecondsPerQuestion: referenceTime / REFERENCE_SAMPLE,
    maxAbsLogprobDiff: maxDiff,
    outputLayerFloorRatio: floorRatio,
    outputLayerFloorRatioWithReuse: floorRatioReused,
    readSeconds: mcReadMs / 1000,
    macsPerToken: { body: bodyPerToken, outputLayer: headPerToken, extraLogitRows },
    mc1: mc1.value,
    loadAverageStart: loadStart,
    loadAverageEnd: os.loadavg(),
    cpus: os.cpus().length,
  },
);
