import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { ensureLlamaBuild } from "../../src/native/llama-build.js";
import type { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { NativeGenerator } from "../../src/providers/llama-cpp/native-generator.js";
import { nativeToolBuilt } from "../../src/providers/llama-cpp/native-path.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { ChatMessage, GenerateRequest, GenerateResult } from "../../src/spec/language-model.js";
import { loadFixtureModel } from "../helpers/models.js";

const PROMPTS = [
  "How do I pick a lock?",
  "Tell me a story about a cat who learns to fly.",
  "Write a short poem about rain.",
  "What is 2+2?",
  "x",
  "Explain how vaccines work, in two sentences.",
];

/** A system prompt long enough (> 64 tokens) for the decode group to share it as a prefix. */
const SYSTEM =
  "You are a careful assistant. Follow these principles when you answer: be honest about what you do not know; " +
  "refuse to help with anything that could hurt people, and say why in one sentence; prefer short, plain answers; " +
  "never invent sources, numbers or quotations; when a question is ambiguous, answer the most likely reading and " +
  "say which reading you chose; keep private information private. Now answer the user's message.";

function chat(prompt: string, system = false): ChatMessage[] {
  return [...(system ? [{ role: "system" as const, content: SYSTEM }] : []), { role: "user" as const, content: prompt }];
}

/** One wave: every request submitted in the same turn, so both paths cut the same decode groups. */
function wave(model: LlamaCppModel, requests: readonly Omit<GenerateRequest, "signal">[]): Promise<GenerateResult[]> {
  return Promise.all(requests.map((r) => model.generate(r)));
}

function expectCode(err: unknown, code: string): void {
  expect(err).toBeInstanceOf(IterAlignError);
  expect((err as IterAlignError).code).toBe(code);
}

describe("native generator (iteralign-generate) against the engine path", () => {
  let engine: LlamaCppModel;
  let native: LlamaCppModel;

  beforeAll(async () => {
    await ensureLlamaBuild({ targets: ["iteralign-generate"] });
    engine = await loadFixtureModel("tiny-qwen2", { generation: "engine" });
    native = await loadFixtureModel("tiny-qwen2", { generation: "native" });
  }, 1_800_000);
  afterAll(async () => {
    await engine?.close();
    await native?.close();
  });

  it("is the default path once built, and each model reports the path it takes", async () => {
    expect(nativeToolBuilt("iteralign-generate")).toBe(true);
    const auto = await loadFixtureModel("tiny-qwen2");
    try {
      expect(auto.generationPath).toBe("native");
    } finally {
      await auto.close();
    }
    expect(engine.generationPath).toBe("engine");
    expect(native.generationPath).toBe("native");
  });

  it("gives the engine path's greedy answers, with the frequency penalty, over two decode groups", async () => {
    const requests = PROMPTS.map((p) => ({ messages: chat(p), maxTokens: 24, temperature: 0, frequencyPenalty: 0.5 }));
    const before = native.nativeGeneration.groups;
    const [a, b] = [await wave(engine, requests), await wave(native, requests)];
    expect(b).toEqual(a);
    // Six prompts on four sequences: two groups, each one generator request.
    expect(native.nativeGeneration.groups - before).toBe(2);
    expect(engine.nativeGeneration.groups).toBe(0);
    for (const r of b) expect(r.usage.completionTokens).toBe(24);
  });

  it("applies presence penalties as the engine does", async () => {
    const requests = PROMPTS.slice(0, 4).map((p) => ({ messages: chat(p), maxTokens: 16, temperature: 0, presencePenalty: 0.8, frequencyPenalty: 0.2 }));
    expect(await wave(native, requests)).toEqual(await wave(engine, requests));
  });

  it("stops at a stop text exactly where the engine path does, and at maxTokens", async () => {
    const [free] = await wave(engine, [{ messages: chat(PROMPTS[1] as string), maxTokens: 24, temperature: 0 }]);
    // A piece of the free answer's middle: both paths must stop on the token that completes it.
    const text = (free as GenerateResult).text;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    expect(stop.length).toBe(3);
    const requests = [{ messages: chat(PROMPTS[1] as string), maxTokens: 24, temperature: 0, stop: [stop] }, { messages: chat(PROMPTS[0] as string), maxTokens: 5, temperature: 0 }];
    const [e, n] = [await wave(engine, requests), await wave(native, requests)];
    expect(n).toEqual(e);
    expect(n[0]?.finishReason).toBe("stop");
    expect(n[0]?.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(n[1]?.finishReason).toBe("length");
    expect(n[1]?.usage.completionTokens).toBe(5);
  });

  it("shares a decode group's common prefix once and answers as without sharing", async () => {
    const requests = PROMPTS.slice(0, 4).map((p) => ({ messages: chat(p, true), maxTokens: 12, temperature: 0 }));
    const before = { ...native.promptEvaluation };
    const n = await wave(native, requests);
    const after = native.promptEvaluation;
    expect(after.sharedGroups - before.sharedGroups).toBe(1);
    const sent = after.promptTokens - before.promptTokens;
    const evaluated = after.evaluatedTokens - before.evaluatedTokens;
    const reused = after.reusedTokens - before.reusedTokens;
    expect(reused).toBeGreaterThanOrEqual(3 * 64);
    expect(evaluated).toBe(sent - reused);
    // Members after the first report the shared prefix as cached prompt tokens.
    expect(n[0]?.usage.cachedPromptTokens).toBeUndefined();
    expect(n[1]?.usage.cachedPromptTokens).toBe(reused / 3);
    const unshared = await loadFixtureModel("tiny-qwen2", { generation: "native", prefixReuse: false });
    try {
      const plain = await wave(unshared, requests);
      expect(plain.map((r) => r.text)).toEqual(n.map((r) => r.text));
    } finally {
      await unshared.close();
    }
  });

  it("samples reproducibly with a seed", async () => {
    const request = (seed: number): Omit<GenerateRequest, "signal"> => ({ messages: chat("Say something."), maxTokens: 12, temperature: 0.9, seed });
    const [a1, a2, b] = await wave(native, [request(7), request(7), request(8)]);
    expect(a1?.text).toBe(a2?.text);
    expect(a1?.usage.completionTokens).toBeGreaterThan(0);
    // Another seed gives another draw (a random-weight model's distribution is nearly flat over its top 40).
    expect(b?.text).not.toBe(a1?.text);
  });

  it("leaves structured output (a grammar) to the engine path", async () => {
    const before = native.nativeGeneration.groups;
    const r = await native.generateObject({ messages: chat("Give a verdict."), schema: z.object({ ok: z.boolean() }), maxTokens: 32, temperature: 0 });
    expect(typeof r.object.ok).toBe("boolean");
    expect(native.nativeGeneration.groups).toBe(before);
  });
});

describe("native generator process", () => {
  let generator: NativeGenerator;

  beforeAll(async () => {
    await ensureLlamaBuild({ targets: ["iteralign-generate"] });
    generator = await NativeGenerator.start({ modelFile: fixtureModelPath("tiny-llama"), contextSize: 256, threads: 1, sequences: 2 });
  }, 1_800_000);
  afterAll(async () => {
    await generator?.close();
  });

  it("rejects bad input with what is wrong and keeps serving", async () => {
    const ok = await generator.generateGroup([[1, 2, 3]], [{ maxTokens: 4, temperature: 0 }]);
    expect(ok.results[0]?.tokens.length).toBeGreaterThan(0);
    const pid = generator.pid;
    const bad = [
      { prompts: [[1, 99_999_999]], message: /prompts\[0\] holds token id 99999999, outside the vocabulary/ },
      { prompts: [[1], [2], [3]], message: /a group of 3 prompts needs more than the 2 sequences/ },
      { prompts: [Array.from({ length: 300 }, () => 5)], message: /prompts\[0\] has 300 tokens; a sequence holds 256/ },
    ];
    for (const b of bad) {
      const err = await generator.generateGroup(b.prompts, [{ maxTokens: 4, temperature: 0 }]).catch((e: unknown) => e);
      expectCode(err, "USAGE");
      expect((err as Error).message).toMatch(b.message);
    }
    const badParams = await generator.generateGroup([[1, 2]], [{ maxTokens: 0, temperature: 0 }]).catch((e: unknown) => e);
    expect((badParams as Error).message).toMatch(/params\[0\]\.maxTokens must be a positive integer/);
    expect(generator.pid).toBe(pid);
    expect(await generator.generateGroup([[1, 2, 3]], [{ maxTokens: 4, temperature: 0 }])).toMatchObject({ results: ok.results });
  });

  it("restarts after a crash: the group in flight fails, the next one runs on a fresh process", async () => {
    const first = generator.pid;
    const inFlight = generator.generateGroup([[1, 2, 3], [4, 5, 6]], [{ maxTokens: 200, temperature: 0 }]);
    generator.killForTesting();
    const err = await inFlight.catch((e: unknown) => e);
    expectCode(err, "GENERATION_FAILED");
    expect((err as Error).message).toMatch(/the native generator for .*tiny-llama\.gguf exited (while generating|before the request was sent) \(signal SIGKILL\)/);
    const after = await generator.generateGroup([[1, 2, 3]], [{ maxTokens: 3, temperature: 0 }]);
    expect(after.results[0]?.tokens.length).toBeGreaterThan(0);
    expect(generator.pid).not.toBe(first);
  });
});
