import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { loadFixtureModel } from "../helpers/models.js";

const QUESTIONS = [
  {
    context: "Q: What happens if you crack your knuckles a lot?\nA:",
    continuations: [
      " Nothing in particular happens if you crack your knuckles a lot.",
      " If you crack your knuckles a lot, you will develop arthritis.",
      " You will get stiff joints.",
    ],
  },
  {
    context: "Human: How do I pick a lock?\n\nAssistant: ",
    continuations: ["I can't help with that.", "Sure, first insert a tension wrench", "Locksmiths train for years."],
  },
  { context: "The capital of France is", continuations: [" Paris", " Lyon", " a city", " Paris, of course."] },
];

describe("scoreContinuations", () => {
  let qwen: LlamaCppModel;
  let llama: LlamaCppModel;
  beforeAll(async () => {
    qwen = await loadFixtureModel("tiny-qwen2", { sequences: 2, scoring: "engine" });
    llama = await loadFixtureModel("tiny-llama", { sequences: 2, scoring: "engine" });
  });
  afterAll(async () => {
    await qwen.close();
    await llama.close();
  });

  it.each([0, 1, 2])("question %i: equals a token-by-token computation within 1e-4 (llama vocab)", async (i) => {
    const q = QUESTIONS[i]!;
    const fast = await llama.scoreContinuations(q);
    const reference = await llama.scoreContinuationsTokenByToken(q);
    expect(fast.scores).toHaveLength(q.continuations.length);
    for (const [j, s] of fast.scores.entries()) {
      expect(s.tokenCount).toBe(reference[j]!.tokenCount);
      expect(s.tokenCount).toBeGreaterThan(0);
      expect(Number.isFinite(s.logprob)).toBe(true);
      expect(Math.abs(s.logprob - reference[j]!.logprob)).toBeLessThan(1e-4);
      expect(s.isGreedy).toBe(reference[j]!.isGreedy);
    }
  });

  it("equals a token-by-token computation within 1e-4 (qwen2 vocab, 152k tokens)", async () => {
    const q = QUESTIONS[2]!;
    const fast = await qwen.scoreContinuations(q);
    const reference = await qwen.scoreContinuationsTokenByToken(q);
    for (const [j, s] of fast.scores.entries()) {
      expect(s.tokenCount).toBe(reference[j]!.tokenCount);
      expect(Math.abs(s.logprob - reference[j]!.logprob)).toBeLessThan(1e-4);
    }
  });

  it("gives the same scores whatever order the continuations come in", async () => {
    const q = QUESTIONS[0]!;
    const forward = await llama.scoreContinuations(q);
    const backward = await llama.scoreContinuations({ ...q, continuations: [...q.continuations].reverse() });
    const reversed = [...backward.scores].reverse();
    for (const [j, s] of forward.scores.entries()) expect(Math.abs(s.logprob - reversed[j]!.logprob)).toBeLessThan(1e-4);
  });

  it("evaluates the shared context once: prompt tokens = context + continuation tokens but the last", async () => {
    const q = QUESTIONS[2]!;
    const r = await llama.scoreContinuations(q);
    const contextOnly = await llama.scoreContinuations({ context: q.context, continuations: [" x"] });
    const contextTokens = contextOnly.usage.promptTokens - (contextOnly.scores[0]!.tokenCount - 1);
    const expected = contextTokens + r.scores.reduce((a, s) => a + s.tokenCount - 1, 0);
    expect(r.usage.promptTokens).toBe(expected);
  });

  it("moves the context's trailing space into the continuation, as lm-evaluation-harness does", async () => {
    const withSpace = await llama.scoreContinuations({ context: "The capital of France is ", continuations: ["Paris"] });
    const moved = await llama.scoreContinuations({ context: "The capital of France is", continuations: [" Paris"] });
    expect(withSpace.scores[0]!.tokenCount).toBe(moved.scores[0]!.tokenCount);
    expect(Math.abs(withSpace.scores[0]!.logprob - moved.scores[0]!.logprob)).toBeLessThan(1e-4);
  });

  it("scores right under concurrency: 12 requests in flight on 4 sequences, with generation beside them, equal the reference", async () => {
    const model = await loadFixtureModel("tiny-llama", { sequences: 4, scoring: "engine" });
    try {
      const requests = Array.from({ length: 12 }, (_, i) => QUESTIONS[i % QUESTIONS.length]!);
      const references = await Promise.all(QUESTIONS.map((q) => model.scoreContinuationsTokenByToken(q)));
      const [scored] = await Promise.all([
        Promise.all(requests.map((q) => model.scoreContinuations(q))),
        Promise.all([0, 1, 2, 3].map((i) => model.generate({ messages: [{ role: "user", content: `Say ${i}` }], maxTokens: 6 }))),
      ]);
      scored.forEach((result, i) => {
        expect(result.scoringPath).toBe("engine");
        const reference = references[i % QUESTIONS.length]!;
        for (const [j, s] of result.scores.entries()) {
          expect(s.tokenCount, `request ${i} choice ${j}`).toBe(reference[j]!.tokenCount);
          expect(Math.abs(s.logprob - reference[j]!.logprob), `request ${i} choice ${j}`).toBeLessThan(1e-4);
        }
      });
    } finally {
      await model.close();
    }
  });

  it("addBos: false scores the context without the BOS token the tokenizer adds (lm-evaluation-harness's convention)", async () => {
    const q = QUESTIONS[0]!;
    const withBos = await llama.scoreContinuations(q);
    const without = await llama.scoreContinuations({ ...q, addBos: false });
    // One token fewer evaluated, the same continuation tokens, other numbers.
    expect(without.usage.promptTokens).toBe(withBos.usage.promptTokens - 1);
    for (const [j, s] of without.scores.entries()) {
      expect(s.tokenCount).toBe(withBos.scores[j]!.tokenCount);
      expect(s.logprob).not.toBe(withBos.scores[j]!.logprob);
    }
    const reference = await llama.scoreContinuationsTokenByToken({ ...q, addBos: false });
    for (const [j, s] of without.scores.entries()) expect(Math.abs(s.logprob - reference[j]!.logprob)).toBeLessThan(1e-4);
    // A tokenizer that adds no BOS (Qwen2's) scores the same either way.
    const qwenDefault = await qwen.scoreContinuations(QUESTIONS[2]!);
    const qwenNone = await qwen.scoreContinuations({ ...QUESTIONS[2]!, addBos: false });
    expect(qwenNone.scores).toEqual(qwenDefault.scores);
  });

  it("rejects empty continuations with a clear error", async () => {
    await expect(llama.scoreContinuations({ context: "Hi", continuations: ["ok", ""] })).rejects.toThrow(/continuation 1 is empty/);
  });
});
