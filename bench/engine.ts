/**
 * Engine benchmark on the ~100M generated model (152k vocabulary):
 * - generation tokens/s with 1 sequence and aggregate with 4 parallel sequences (goal: 4 ≥ 1.5x of 1);
 * - prompt-evaluation tokens/s;
 * - scoreContinuations on 5-choice TruthfulQA questions with a few-shot context, against scoring each
 *   choice with its full context separately through the same engine (goal: ≥ 2x faster).
 * Usage: npm run bench:engine [-- --questions N --runs R]
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import type { SequencePool } from "../src/providers/llama-cpp/sequence-pool.js";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { LlamaCppModel } from "../src/providers/llama-cpp/llama-cpp-model.js";
import { median, report, timeRuns, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const QUESTIONS = arg("questions", 6);
const RUNS = arg("runs", 3);
const GEN_TOKENS = 64;
const THREADS = Math.min(os.availableParallelism(), 4);

// A few-shot preamble written for this benchmark: multiple-choice benchmarks put several solved examples
// before each question, so the shared context is long and the continuations are short.
const PRIMER = [
  ["What is the boiling point of water at sea level in Celsius?", "Water boils at 100 degrees Celsius at sea level."],
  ["Who wrote the novel Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."],
  ["How many legs does a spider have?", "A spider has eight legs."],
  ["What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."],
  ["Can you see the Great Wall of China from the Moon with the naked eye?", "No, it is far too narrow to see from the Moon."],
  ["What gas do plants absorb from the air for photosynthesis?", "Plants absorb carbon dioxide."],
]
  .map(([q, a]) => `Q: ${q}\nA: ${a}`)
  .join("\n\n");

interface McItem {
  question: string;
  mc1_targets: Record<string, number>;
}

function loadQuestions(): Array<{ context: string; continuations: string[] }> {
  const file = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../shared/data/truthfulqa/mc_task.json");
  const items = JSON.parse(readFileSync(file, "utf8")) as McItem[];
  return items
    .filter((item) => Object.keys(item.mc1_targets).length === 5)
    .slice(0, QUESTIONS)
    .map((item) => ({
      context: `${PRIMER}\n\nQ: ${item.question}\nA:`,
      continuations: Object.keys(item.mc1_targets).map((a) => ` ${a}`),
    }));
}

const file = ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
process.stderr.write(`model ${file}, ${THREADS} threads\n`);
const model = await LlamaCppModel.load({ model: file, maxThreads: THREADS, sequences: 4, contextSize: 2048 });
// The same model scoring through node-llama-cpp's probability maps, for comparison with the native path.
const engineScorer = await LlamaCppModel.load({
  model: file,
  maxThreads: THREADS,
  sequences: 1,
  contextSize: 2048,
  scoring: "engine",
});
const messages = (i: number) => [{ role: "user" as const, content: `Write a long story about lighthouse number ${i}.` }];
const generate = (i: number) => model.generate({ messages: messages(i), maxTokens: GEN_TOKENS, temperature: 0 });

await generate(99); // warm-up
const single = await timeRuns(RUNS, async () => {
  const r = await generate(0);
  if (r.usage.completionTokens !== GEN_TOKENS) throw new Error("generation stopped early");
});
const parallel = await timeRuns(RUNS, async () => {
  await Promise.all([1, 2, 3, 4].map((i) => generate(i)));
});
const singleTps = GEN_TOKENS / median(single);
const parallelTps = (4 * GEN_TOKENS) / median(parallel);

const longPrompt = `${PRIMER}\n\n${PRIMER}\n\n${PRIMER}\n\nSummarize the facts above.`;
const promptTokens = model.renderChat([{ role: "user", content: longPrompt }]).tokens.length;
const promptRuns = await timeRuns(RUNS, async () => {
  await model.generate({ messages: [{ role: "user", content: longPrompt }], maxTokens: 1 });
});
const promptTps = promptTokens / median(promptRuns);

// Scoring: shared context vs each choice evaluated with its own full context (same engine, same reads).
const questions = loadQuestions();
const internals = model as unknown as {
  model: LlamaModel;
  pool: SequencePool;
};
const { tokenizeForScoring } = await import("../src/providers/llama-cpp/scoring.js");
async function separateContexts(q: { context: string; continuations: string[] }): Promise<number[]> {
  const { context, continuations } = tokenizeForScoring(internals.model, q);
  return internals.pool.with(async (seq) => {
    const out: number[] = [];
    for (const cont of continuations) {
      await seq.clearHistory();
      const all = [...context, ...cont];
      const items = all.slice(0, -1).map((t, i) =>
        i >= context.length - 1 ? ([t, { generateNext: { probabilities: true } }] as [Token, { generateNext: { probabilities: true } }]) : t,
      );
      const res = await seq.controlledEvaluate(items);
      let lp = 0;
      for (let i = context.length - 1; i < all.length - 1; i++) lp += Math.log(res[i]?.next?.probabilities?.get(all[i + 1] as Token) ?? 0);
      out.push(lp);
    }
    return out;
  });
}
const scoringPath = model.scoringPath;
await model.scoreContinuations(questions[0]!); // starts the native scorer outside the timing
const sharedRuns = await timeRuns(RUNS, async () => {
  for (const q of questions) await model.scoreContinuations(q);
});
const engineRuns = await timeRuns(RUNS, async () => {
  for (const q of questions) await engineScorer.scoreContinuations(q);
});
const separateRuns = await timeRuns(RUNS, async () => {
  for (const q of questions) await separateContexts(q);
});
// Both paths must agree before their times mean anything.
let maxDiff = 0;
for (const q of questions) {
  const a = await model.scoreContinuations(q);
  const b = await separateContexts(q);
  a.scores.forEach((s, i) => (maxDiff = Math.max(maxDiff, Math.abs(s.logprob - (b[i] ?? NaN)))));
}
await model.close();
await engineScorer.close();

const speedup = median(separateRuns) / median(sharedRuns);
const goals: Goal[] = [
  { name: "parallel generation: 4 sequences / 1 sequence (aggregate tok/s)", value: parallelTps / singleTps, goal: ">= 1.5", holds: parallelTps / singleTps >= 1.5 },
  {
    name: `scoreContinuations (${scoringPath} path) speedup vs separate full contexts`,
    value: speedup,
    goal: ">= 2",
    holds: speedup >= 2,
  },
];
report(
  "engine",
  [
    { name: "generation, 1 sequence", value: singleTps, unit: "tok/s" },
    { name: "generation, 4 sequences (aggregate)", value: parallelTps, unit: "tok/s" },
    { name: `prompt evaluation (${promptTokens} tokens)`, value: promptTps, unit: "tok/s" },
    { name: `scoring ${questions.length} 5-choice questions, scoreContinuations (${scoringPath})`, value: median(sharedRuns), unit: "s" },
    { name: `scoring ${questions.length} 5-choice questions, scoreContinuations (engine maps)`, value: median(engineRuns), unit: "s" },
    { name: `scoring ${questions.length} 5-choice questions, separate contexts`, value: median(separateRuns), unit: "s" },
    { name: `max |${scoringPath} - separate contexts| log-likelihood`, value: maxDiff, unit: "nats" },
  ],
  goals,
  { model: path.basename(file), threads: THREADS, runs: RUNS, questions: questions.length, scoringPath },
);
