import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  letterChoicePrompt,
  mc1FromLogprobs,
  mc2FromLogprobs,
  mcItemResult,
  mcMetrics,
  runMultipleChoice,
  shownOrder,
  type McItem,
} from "../../src/eval/multiple-choice.js";
import { wilsonInterval } from "../../src/eval/stats.js";
import type { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { CapabilityMissingError, type ScoreRequest, type ScoreResult } from "../../src/spec/language-model.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { loadFixtureModel } from "../helpers/models.js";
import { modelDouble } from "./fixtures/doubles.js";

const ITEMS: McItem[] = [
  { id: "q1", context: "Q: What colour is the sky on a clear day?\nA:", choices: ["Blue.", "Green, mostly.", "Red at noon."], labels: [0] },
  { id: "q2", context: "Q: How many days are in a week?\nA:", choices: ["Seven days.", "Five.", "Ten days."], labels: [0], category: "calendar" },
  { id: "q3", context: "Q: Which are even numbers?\nA:", choices: ["Three.", "Four.", "Six."], labels: [1, 2], category: "math" },
  { id: "q4", context: "Q: Is water wet?\nA:", choices: ["It depends.", "Yes.", "No."], labels: [1], category: "math" },
];

describe("MC1 and MC2 from log-likelihoods", () => {
  it("MC1 picks the highest log-likelihood, the first on ties (numpy argmax), within the subset", () => {
    expect(mc1FromLogprobs([-3, -1, -2], { choices: [0, 1, 2], labels: [1] })).toEqual({ prediction: 1, correct: true });
    expect(mc1FromLogprobs([-1, -1, -2], { choices: [0, 1, 2], labels: [1] })).toEqual({ prediction: 0, correct: false });
    expect(mc1FromLogprobs([-3, -1, -2], { choices: [0, 2], labels: [0] })).toEqual({ prediction: 2, correct: false });
    expect(mc1FromLogprobs([-3, -1, -2], { choices: [0, 1, 2], labels: [0, 1] })).toEqual({ prediction: 1, correct: true });
  });

  it("MC2 is the probability mass on the true choices, un-normalized by length", () => {
    const lls = [Math.log(0.2), Math.log(0.1), Math.log(0.3), Math.log(0.05)];
    expect(mc2FromLogprobs(lls, { choices: [0, 1, 2, 3], labels: [0, 1] })).toBeCloseTo(0.3 / 0.65, 12);
    expect(mc2FromLogprobs(lls, { choices: [0, 2], labels: [2] })).toBeCloseTo(0.3 / 0.5, 12);
  });

  it("MC2 does not underflow on long answers", () => {
    const v = mc2FromLogprobs([-2000, -2001], { choices: [0, 1], labels: [0] });
    expect(v).toBeCloseTo(1 / (1 + Math.exp(-1)), 12);
  });
});

describe("runMultipleChoice (model double)", () => {
  it("loglik: one scoreContinuations call per item, all choices after the shared context, ' ' delimiter", async () => {
    const model = modelDouble();
    const outcomes = await runMultipleChoice(model, ITEMS, { benchmark: "t", mode: "loglik" });
    expect(model.calls.score).toHaveLength(ITEMS.length);
    expect(model.calls.generate).toHaveLength(0);
    const first = model.calls.score.find((r) => r.context === ITEMS[0]!.context)!;
    expect(first.continuations).toEqual([" Blue.", " Green, mostly.", " Red at noon."]);
    // The double's log-likelihood is -length/10: the shortest choice wins.
    expect(outcomes.map((o) => o.prediction)).toEqual([0, 1, 2, 2]);
    expect(outcomes.map((o) => o.mc1Correct)).toEqual([true, false, true, false]);
  });

  it("keeps up to `concurrency` items in flight and returns results in item order", async () => {
    let inFlight = 0;
    let peak = 0;
    const model = modelDouble();
    const base = model.scoreContinuations!.bind(model);
    model.scoreContinuations = async (request: ScoreRequest): Promise<ScoreResult> => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 5 + (request.context.length % 7)));
      inFlight--;
      return base(request);
    };
    const many = Array.from({ length: 20 }, (_, i) => ({ ...ITEMS[i % 4]!, id: `i${i}` }));
    const progress: number[] = [];
    const outcomes = await runMultipleChoice(model, many, { benchmark: "t", mode: "loglik", concurrency: 3, onProgress: (d) => progress.push(d) });
    expect(peak).toBe(3);
    expect(outcomes.map((o) => o.item.id)).toEqual(many.map((i) => i.id));
    expect(progress).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it("fails fast on a missing capability, before any call, naming it", async () => {
    const model = modelDouble({ capabilities: ["generate"] });
    const run = runMultipleChoice(model, ITEMS, { benchmark: "demo", mode: "loglik" });
    await expect(run).rejects.toBeInstanceOf(CapabilityMissingError);
    await expect(run).rejects.toThrow(/demo \(loglik mode\) needs 'scoreContinuations'/);
    expect(model.calls.generate).toHaveLength(0);
    const noGenerate = modelDouble({ capabilities: ["scoreContinuations"] });
    await expect(runMultipleChoice(noGenerate, ITEMS, { benchmark: "demo", mode: "generative" })).rejects.toThrow(/needs 'generate'/);
    expect(noGenerate.calls.score).toHaveLength(0);
  });

  it("names the item when scoring fails, and stops taking new items", async () => {
    const model = modelDouble();
    model.scoreContinuations = async (request: ScoreRequest): Promise<ScoreResult> => {
      model.calls.score.push(request);
      throw new IterAlignError("USAGE", "context too long");
    };
    await expect(runMultipleChoice(model, ITEMS, { benchmark: "t", mode: "loglik", concurrency: 1 })).rejects.toThrow(/t item q1: context too long/);
    expect(model.calls.score).toHaveLength(1);
  });

  it("rejects inconsistent items before any call", async () => {
    const model = modelDouble();
    const bad = [{ ...ITEMS[0]!, labels: [5] }];
    await expect(runMultipleChoice(model, bad, { benchmark: "t", mode: "loglik" })).rejects.toThrow(/item q1: labels/);
    expect(model.calls.score).toHaveLength(0);
  });

  it("generative: lettered options in a deterministic shuffled order, temperature 0, the letter mapped back", async () => {
    const model = modelDouble({
      // Answers with the letter of the option that reads "Seven days.", or "Blue." in a sentence; else refuses.
      answer: (prompt) => {
        const seven = /([A-Z])\. Seven days\./.exec(prompt);
        if (seven) return `The answer is (${seven[1]}).`;
        const blue = /([A-Z])\. Blue\./.exec(prompt);
        if (blue) return `<think>hmm</think>\n${blue[1]}`;
        return "I'm not able to answer that.";
      },
    });
    const outcomes = await runMultipleChoice(model, ITEMS, { benchmark: "t", mode: "generative", maxTokens: 7 });
    expect(model.calls.generate).toHaveLength(4);
    for (const request of model.calls.generate) {
      expect(request.temperature).toBe(0);
      expect(request.maxTokens).toBe(7);
      expect(request.messages).toHaveLength(1);
      expect(request.messages[0]!.role).toBe("user");
    }
    expect(outcomes.map((o) => o.prediction)).toEqual([0, 0, null, null]);
    expect(outcomes.map((o) => o.mc1Correct)).toEqual([true, true, false, false]);
    const order = shownOrder(ITEMS[0]!, "t");
    expect(order).toEqual(shownOrder(ITEMS[0]!, "t"));
    expect([...order].sort()).toEqual([0, 1, 2]);
    const prompt = model.calls.generate.find((r) => r.messages[0]!.content.includes("sky"))!.messages[0]!.content;
    expect(prompt).toBe(letterChoicePrompt("Q: What colour is the sky on a clear day?\nA:", order.map((i) => ITEMS[0]!.choices[i]!)));
  });

  it("generative: shuffles so the true answer is not always option A", () => {
    const items = Array.from({ length: 40 }, (_, i) => ({ ...ITEMS[0]!, id: `x${i}` }));
    const firstShown = new Set(items.map((item) => shownOrder(item, "t")[0]));
    expect(firstShown.size).toBe(3);
  });

  it("letterChoicePrompt lists options A., B., ... and asks for one letter", () => {
    expect(letterChoicePrompt(" Which? ", ["One", "Two"])).toBe(
      "Answer the following multiple-choice question.\n\nQuestion: Which?\n\nA. One\nB. Two\n\nReply with the letter of the correct option only (A, B).",
    );
  });
});

describe("metrics and item results", () => {
  it("MC1 with a Wilson interval, MC2 as a mean, per category when asked", async () => {
    const outcomes = await runMultipleChoice(modelDouble(), ITEMS, { benchmark: "t", mode: "loglik" });
    const metrics = mcMetrics(outcomes, "loglik", { mc1Name: "mc1", mc2: true, byCategory: true });
    const overall = metrics.find((m) => m.name === "mc1" && m.category === undefined)!;
    expect(overall).toMatchObject({ value: 0.5, n: 4, mode: "loglik", higherIsBetter: true });
    expect(overall.ci95).toEqual(wilsonInterval(2, 4));
    const mc2 = metrics.find((m) => m.name === "mc2" && m.category === undefined)!;
    expect(mc2.value).toBeCloseTo(outcomes.reduce((a, o) => a + o.mc2!, 0) / 4, 12);
    expect(metrics.filter((m) => m.category !== undefined).map((m) => `${m.category}:${m.name}`)).toEqual([
      "calendar:mc1",
      "calendar:mc2",
      "math:mc1",
      "math:mc2",
    ]);
    for (const m of metrics) expect(m.mode).toBe("loglik");
  });

  it("generative metrics: MC1 (null counts wrong) and the unparsed share, no MC2", async () => {
    const outcomes = await runMultipleChoice(modelDouble({ answer: () => "I would rather not say." }), ITEMS, { benchmark: "t", mode: "generative" });
    const metrics = mcMetrics(outcomes, "generative", { mc1Name: "mc1", mc2: true, byCategory: false });
    expect(metrics.map((m) => [m.name, m.value, m.mode])).toEqual([
      ["mc1", 0, "generative"],
      ["unparsed", 1, "generative"],
    ]);
  });

  it("item results carry each choice's logprob and token count, the prediction and the label", async () => {
    const [outcome] = await runMultipleChoice(modelDouble(), [ITEMS[2]!], { benchmark: "t", mode: "loglik" });
    const result = mcItemResult(outcome!);
    // The double's log-likelihoods are -length/10 with the leading space: " Six." (-0.5) is the best.
    expect(result).toMatchObject({ id: "q3", category: "math", prediction: 2, label: "1|2", correct: true });
    expect(result.details.choices).toEqual([
      { text: "Three.", logprob: -0.7, tokenCount: 7, isGreedy: false, isTrue: false },
      { text: "Four.", logprob: -0.6, tokenCount: 6, isGreedy: false, isTrue: true },
      { text: "Six.", logprob: -0.5, tokenCount: 5, isGreedy: false, isTrue: true },
    ]);
    expect(result.details.mc2).toBeCloseTo((Math.exp(-0.6) + Math.exp(-0.5)) / (Math.exp(-0.7) + Math.exp(-0.6) + Math.exp(-0.5)), 12);
  });
});

describe("runMultipleChoice on the tiny model", () => {
  let model: LlamaCppModel;
  beforeAll(async () => {
    model = await loadFixtureModel("tiny-qwen2");
  });
  afterAll(async () => {
    await model.close();
  });

  it("scores every choice; concurrency does not change the scores", async () => {
    const together = await runMultipleChoice(model, ITEMS, { benchmark: "t", mode: "loglik", concurrency: 4 });
    const oneByOne = await runMultipleChoice(model, ITEMS, { benchmark: "t", mode: "loglik", concurrency: 1 });
    for (const [i, outcome] of together.entries()) {
      expect(outcome.scores).toHaveLength(ITEMS[i]!.choices.length);
      for (const [j, s] of outcome.scores!.entries()) {
        expect(Number.isFinite(s.logprob)).toBe(true);
        expect(s.logprob).toBeLessThan(0);
        expect(s.tokenCount).toBeGreaterThan(0);
        expect(Math.abs(s.logprob - oneByOne[i]!.scores![j]!.logprob)).toBeLessThan(1e-4);
      }
      const lls = outcome.scores!.map((s) => s.logprob);
      expect(outcome.prediction).toBe(mc1FromLogprobs(lls, { choices: [0, 1, 2], labels: ITEMS[i]!.labels }).prediction);
      expect(outcome.mc2).toBeCloseTo(mc2FromLogprobs(lls, { choices: [0, 1, 2], labels: ITEMS[i]!.labels }), 12);
    }
  });
});
