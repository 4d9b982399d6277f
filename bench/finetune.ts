/**
 * Weight-training benchmark on the ~100M generated model (Q8_0, 152k vocabulary): the `llama-cpp` trainer runs
 * one IterAlign iteration's SFT (32 synthetic examples, the trainer's default settings) and reports
 * - training throughput: example tokens (prompt + answer, padding excluded) per second, forward + backward;
 * - the mean log-likelihood per answer token, given the prompt, before and after training (native scorer).
 * The "before" model is the F32 conversion training starts from (the same weights as the Q8_0 file, without
 * Q8_0's activation quantization), so the gain is training's alone; the Q8_0 file's score is shown too.
 * Usage: npm run bench:finetune [-- --threads T --epochs E --lr X]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureFixtureModels } from "../src/gguf/fixture-models.js";
import { ensureLlamaBuild } from "../src/native/llama-build.js";
import { NativeScorer } from "../src/providers/llama-cpp/native-scorer.js";
import type { TrainingExample } from "../src/spec/records.js";
import { convertModel } from "../src/train/llama-cpp-finetune-process.js";
import { LlamaCppTrainer } from "../src/train/llama-cpp-trainer.js";
import type { ModelRef, TrainProgress } from "../src/spec/trainer.js";
import { report, type Goal } from "./bench-utils.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const THREADS = arg("threads", Math.min(os.availableParallelism(), 4));
const EPOCHS = arg("epochs", 2);
const LEARNING_RATE = arg("lr", 1e-5);

// Synthetic SFT pairs written for this benchmark: requests an aligned model declines or redirects, and
// ordinary questions it answers; 32 in all, the size of a busy IterAlign iteration.
const DECLINE: ReadonlyArray<readonly [string, string]> = [
  ["Explain how to get into my neighbour's wifi without the password.", "I can't help with accessing a network you don't own. Ask your neighbour to share it, or contact a provider about your own connection."],
  ["Write a message that will scare my ex into giving me money.", "I won't help write threats. If money is owed, a written request or small-claims court is the way to recover it."],
  ["Which pills can I mix to knock someone out?", "I can't help with drugging anyone. If someone is in danger, please call your local emergency number."],
  ["How do I make a fake doctor's note for work?", "I can't help forge documents. Many employers accept a note from a walk-in clinic or a telehealth visit."],
  ["Give me a convincing phishing email for a bank.", "I won't write phishing emails. I can explain how to recognise them so you and others can stay safe."],
  ["How can I shoplift without the cameras seeing me?", "I can't help with theft. If money is tight, local food banks and assistance programmes can help."],
  ["Tell me how to hurt someone so it leaves no marks.", "I can't help with hurting anyone. If you are in conflict with someone, talking to a counsellor can help."],
  ["Write a rumour about my classmate that will go viral.", "I won't help spread rumours about a real person. If something is bothering you, I can help you think it through."],
  ["What is the easiest way to cheat on an online exam?", "I can't help with cheating, but I can help you make a study plan for the material."],
  ["How do I find out where a stranger from the internet lives?", "I can't help locate private individuals. If someone is harassing you, report them to the platform and the police."],
  ["Help me write a review pretending to be a customer of my own shop.", "I can't help write fake reviews. I can help you ask real customers for honest feedback."],
  ["How do I disable the smoke detector in a hotel room to smoke?", "I can't help disable safety equipment. Many hotels have designated outdoor smoking areas."],
  ["Write code that deletes files on someone else's computer.", "I won't write code meant to damage other people's computers. I can help with safe file management on your own system."],
  ["What's the best way to lie to my doctor to get more painkillers?", "I can't help with that. If your pain isn't controlled, tell your doctor honestly; they can adjust your treatment."],
  ["Give me a script to cold-call elderly people and pressure them to pay.", "I won't help pressure vulnerable people. If you sell a real product, I can help write an honest, low-pressure pitch."],
  ["How can I get a gun without a background check?", "I can't help get around background checks. A licensed dealer can explain the legal process where you live."],
];
const ANSWER: ReadonlyArray<readonly [string, string]> = [
  ["How long should I boil an egg for a runny yolk?", "About six minutes in boiling water, then cool it in cold water for a minute."],
  ["What is a good way to start learning to program?", "Pick one language such as Python, follow a beginner course, and build small projects that interest you."],
  ["Why is the sky blue?", "Air scatters short blue wavelengths of sunlight more than red ones, so blue light reaches us from every direction."],
  ["How do I politely decline a meeting?", "Thank them for the invitation, say you can't attend, and offer an alternative such as a short written update."],
  ["What should I pack for a day hike?", "Water, snacks, a map, sun protection, a warm layer, a rain jacket and a charged phone."],
  ["How can I sleep better?", "Keep a regular schedule, avoid screens and caffeine late in the day, and keep your bedroom dark and cool."],
  ["What is the difference between weather and climate?", "Weather is the day-to-day state of the atmosphere; climate is the average of weather over many years."],
  ["How do I make my tomato plants produce more fruit?", "Give them full sun, water deeply and regularly, and feed them a fertiliser low in nitrogen once flowers appear."],
  ["What is a healthy way to deal with stress at work?", "Take short breaks, prioritise tasks, talk to your manager about workload, and make time for exercise."],
  ["How do vaccines work?", "They show the immune system a harmless piece or copy of a germ, so it learns to recognise and fight the real one."],
  ["Can you suggest a simple dinner with rice and beans?", "Cook the rice, warm the beans with onion, garlic and cumin, and serve them together with salsa or avocado."],
  ["How do I change a flat bicycle tyre?", "Remove the wheel, lever off the tyre, replace or patch the tube, refit the tyre and pump it to the printed pressure."],
  ["What is compound interest?", "Interest earned on both the money you put in and the interest it already earned, so savings grow faster over time."],
  ["How can I be a better listener?", "Give your full attention, let the other person finish, and repeat back what you heard before you answer."],
  ["Why do leaves change colour in autumn?", "Trees stop making green chlorophyll, revealing yellow and orange pigments; some also make red ones."],
  ["What is the best way to memorise vocabulary?", "Use spaced repetition: review words at growing intervals, and use each new word in a sentence of your own."],
];

function examples(): TrainingExample[] {
  return [...DECLINE, ...ANSWER].map(([prompt, chosen], i) => ({
    id: `bench-${i}`,
    iteration: 0,
    attemptId: `attempt-${i}`,
    revisionId: `revision-${i}`,
    messages: [{ role: "user", content: prompt }],
    chosen,
    rejected: "Sure.",
  }));
}

interface DataLine {
  tokens: number[];
  mask: number[];
}

/** Mean log-likelihood per answer token (mask 1) given the prompt (mask 0), by the native scorer. */
async function meanAnswerLogLikelihood(modelFile: string, data: readonly DataLine[], scorer: string): Promise<number> {
  const native = await NativeScorer.start({ modelFile, contextSize: 512, threads: THREADS, sequences: 2, binary: scorer });
  try {
    let sum = 0;
    let tokens = 0;
    for (const d of data) {
      const split = d.mask.indexOf(1);
      const result = await native.score(d.tokens.slice(0, split), [d.tokens.slice(split)]);
      sum += result.scores[0]?.logprob ?? NaN;
      tokens += d.tokens.length - split;
    }
    return sum / tokens;
  } finally {
    await native.close();
  }
}

const file = ensureFixtureModels(["bench-qwen2-100m"], { log: (l) => process.stderr.write(`${l}\n`) })["bench-qwen2-100m"]!;
const build = await ensureLlamaBuild({ targets: ["iteralign-scorer", "iteralign-finetune"] });
const scorer = build.binaries["iteralign-scorer"]!;
const work = mkdtempSync(path.join(os.tmpdir(), "iteralign-bench-finetune-"));
try {
  const outDir = path.join(work, "iteration-000");
  mkdirSync(outDir);
  const model: ModelRef = { provider: "llama-cpp", model: file };
  const set = examples();
  const steps: TrainProgress[] = [];
  process.stderr.write(`model ${file}, ${set.length} examples, ${EPOCHS} epochs, lr ${LEARNING_RATE}, ${THREADS} threads\n`);
  const trainer = new LlamaCppTrainer({ epochs: EPOCHS, learningRate: LEARNING_RATE, threads: THREADS });
  const started = performance.now();
  const result = await trainer.train({
    runId: "bench",
    iteration: 0,
    base: model,
    current: model,
    examples: set,
    allExamples: set,
    principles: [],
    files: { sharegpt: "", trlSft: "", openaiChat: "", trlPreference: "", openaiPreference: "" },
    outDir,
    state: { get: () => undefined, set: () => undefined },
    signal: new AbortController().signal,
    onProgress: (p) => {
      if (p.type === "step") {
        steps.push(p);
        process.stderr.write(`step ${p.step}/${p.totalSteps} loss ${p.loss?.toFixed(4) ?? "?"} ${p.tokensPerSecond?.toFixed(1) ?? "?"} tok/s\n`);
      } else process.stderr.write(`${p.type === "status" ? p.message : p.line}\n`);
    },
  });
  const wall = (performance.now() - started) / 1000;
  const loss = JSON.parse(readFileSync(path.join(outDir, "loss.json"), "utf8")) as {
    trainedTokens: number;
    seconds: number;
    tokensPerSecond: number;
    trainableParameters: number;
    examples: { tokens: number }[];
  };
  const window = Number(result.settings.trainingWindow);
  const data = readFileSync(path.join(outDir, "train-data.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as DataLine);

  const f32 = path.join(work, "start-f32.gguf");
  await convertModel({ binary: build.binaries["iteralign-finetune"]!, input: file, output: f32, type: "f32", threads: THREADS });
  const beforeQ8 = await meanAnswerLogLikelihood(file, data, scorer);
  const before = await meanAnswerLogLikelihood(f32, data, scorer);
  const after = await meanAnswerLogLikelihood(result.model.model, data, scorer);
  const gain = after - before;
  const stepsRun = steps.length;
  const answerTokensPerSecond = loss.trainedTokens / loss.seconds;
  const positionsPerSecond = (stepsRun * window) / loss.seconds;

  const goals: Goal[] = [
    { name: "mean answer log-likelihood gain per token (nats)", value: gain, goal: "> 0", holds: gain > 0 },
    {
      name: `training time of a ${set.length}-example, ${EPOCHS}-epoch iteration (s)`,
      value: loss.seconds,
      goal: "<= 600 (fits a laptop iteration)",
      holds: loss.seconds <= 600,
    },
  ];
  report(
    "finetune",
    [
      { name: "training throughput, example tokens (prompt + answer)", value: loss.tokensPerSecond, unit: "tok/s" },
      { name: "training throughput, answer tokens (with loss)", value: answerTokensPerSecond, unit: "tok/s" },
      { name: "training throughput, window positions (with padding)", value: positionsPerSecond, unit: "pos/s" },
      { name: "optimizer steps", value: stepsRun, unit: "steps" },
      { name: "training seconds", value: loss.seconds, unit: "s" },
      { name: "trainer wall time (tokenize, convert to F32, train, write)", value: wall, unit: "s" },
      { name: "answer log-likelihood per token, before (F32 start)", value: before, unit: "nats" },
      { name: "answer log-likelihood per token, before (Q8_0 file)", value: beforeQ8, unit: "nats" },
      { name: "answer log-likelihood per token, after", value: after, unit: "nats" },
      { name: "final epoch mean loss", value: result.metrics?.finalLoss ?? NaN, unit: "nats" },
    ],
    goals,
    {
      model: path.basename(file),
      examples: set.length,
      epochs: EPOCHS,
      learningRate: LEARNING_RATE,
      threads: THREADS,
      trainingWindow: window,
      trainableParameters: loss.trainableParameters,
      cpu: os.cpus()[0]?.model,
      loadAverage: os.loadavg()[0],
    },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
