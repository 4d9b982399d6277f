import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import type { Token } from "node-llama-cpp";
import { acquireModel, loadedModelCount } from "../../src/providers/llama-cpp/engine.js";
import { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { loadFixtureModel } from "../helpers/models.js";

const user = (content: string) => [{ role: "user" as const, content }];

describe("llama-cpp provider on generated models", () => {
  let qwen: LlamaCppModel;
  let llama: LlamaCppModel;

  beforeAll(async () => {
    qwen = await loadFixtureModel("tiny-qwen2");
    llama = await loadFixtureModel("tiny-llama");
  });
  afterAll(async () => {
    await qwen.close();
    await llama.close();
  });

  it("renders prompts with each model's own chat template", () => {
    const q = qwen.renderChat([
      { role: "system", content: "S" },
      { role: "user", content: "U" },
    ]);
    expect(qwen.chatTemplateName).toBe("ChatML");
    const qText = qwen.detokenize(q.tokens);
    expect(qText).toContain("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    const l = llama.renderChat(user("U"));
    const lText = llama.detokenize(l.tokens);
    expect(lText).toMatch(/<\|user\|>\s*U<\|end\|>\s*<\|assistant\|>/);
  });

  it("greedy generation is deterministic and sampled generation follows the seed", async () => {
    const a = await qwen.generate({ messages: user("Tell me a story"), maxTokens: 24, temperature: 0 });
    const b = await qwen.generate({ messages: user("Tell me a story"), maxTokens: 24, temperature: 0 });
    expect(a.text).toBe(b.text);
    expect(a.usage.completionTokens).toBe(24);
    expect(a.finishReason).toBe("length");
    const s1 = await llama.generate({ messages: user("Hello"), maxTokens: 24, temperature: 1, seed: 7 });
    const s2 = await llama.generate({ messages: user("Hello"), maxTokens: 24, temperature: 1, seed: 7 });
    const s3 = await llama.generate({ messages: user("Hello"), maxTokens: 24, temperature: 1, seed: 8 });
    expect(s1.text).toBe(s2.text);
    expect(s3.text).not.toBe(s1.text);
  });

  it("streams text pieces that add up to the result, and applies penalties", async () => {
    const pieces: string[] = [];
    const r = await llama.generate({
      messages: user("Stream please"),
      maxTokens: 30,
      onText: (t) => pieces.push(t),
    });
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(r.text);
    const plain = await qwen.generate({ messages: user("Tell me a story"), maxTokens: 24 });
    const penalized = await qwen.generate({ messages: user("Tell me a story"), maxTokens: 24, frequencyPenalty: 2 });
    expect(penalized.text).not.toBe(plain.text);
  });

  it("applies frequency and presence penalties exactly as llama.cpp's own penalties sampler does", async () => {
    // The reference: node-llama-cpp's repeatPenalty (llama.cpp's penalties sampler) on the same prompt tokens.
    const handle = await acquireModel(fixtureModelPath("tiny-qwen2"), { maxThreads: 1 });
    const context = await handle.model.createContext({ sequences: 1, contextSize: 1024, threads: 1, flashAttention: false });
    try {
      for (const [frequencyPenalty, presencePenalty] of [[0.5, 0], [1.3, 0.4], [0.3, 0.9]] as const) {
        const messages = user(`Tell me a story about penalties ${frequencyPenalty}`);
        const ours = await qwen.generate({ messages, maxTokens: 40, temperature: 0, frequencyPenalty, presencePenalty });
        const seq = context.getSequence();
        const generated: Token[] = [];
        for await (const token of seq.evaluate(qwen.renderChat(messages).tokens, {
          temperature: 0,
          repeatPenalty: { punishTokens: () => generated, maxPunishTokens: 40, penalty: 1, frequencyPenalty, presencePenalty },
        })) {
          if (handle.model.isEogToken(token)) break;
          generated.push(token);
          if (generated.length >= 40) break;
        }
        await seq.dispose();
        expect(ours.text).toBe(handle.model.detokenize(generated));
        // The penalty is in effect: without it the same prompt gives another answer.
        expect((await qwen.generate({ messages, maxTokens: 40, temperature: 0 })).text).not.toBe(ours.text);
      }
    } finally {
      await context.dispose();
      await handle.release();
    }
  });

  it("cuts the text at a stop string", async () => {
    const full = await llama.generate({ messages: user("Stop test"), maxTokens: 30 });
    const stop = full.text.slice(10, 14);
    expect(stop.length).toBe(4);
    const cut = await llama.generate({ messages: user("Stop test"), maxTokens: 30, stop: [stop] });
    expect(cut.finishReason).toBe("stop");
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  });

  it("decodes parallel requests together on separate sequences", async () => {
    expect(qwen.parallelSequences).toBe(4);
    const spans: Array<{ start: number; end: number }> = [];
    const results = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (i) => {
        const start = performance.now();
        const r = await qwen.generate({ messages: user(`Request ${i}`), maxTokens: 32 });
        spans.push({ start, end: performance.now() });
        return r;
      }),
    );
    expect(results.every((r) => r.usage.completionTokens === 32)).toBe(true);
    // The first four ran at the same time: each started before any of them finished.
    const firstEnd = Math.min(...spans.map((s) => s.end));
    expect(spans.filter((s) => s.start < firstEnd).length).toBeGreaterThanOrEqual(4);
    // Decoding in parallel must not mix sequences up: each answer is its own prompt's continuation, which
    // the first token shows (it is decided by the prompt's prefill alone).
    const alone = await qwen.generate({ messages: user("Request 3"), maxTokens: 1 });
    expect(results[3]?.text.startsWith(alone.text)).toBe(true);
  });

  it("decodes a parallel batch reproducibly, in fixed lockstep groups, with each answer on its own prompt", async () => {
    const prompts = ["How do I pick a lock?", "Tell me a joke about cats", "What is 2+2?", "Write a poem", "Say hi", "Explain tides"];
    const batch = () =>
      Promise.all(prompts.map((p, i) => qwen.generate({ messages: user(p), maxTokens: 20 + 3 * i, frequencyPenalty: 0.5 })));
    const first = await batch();
    const again = await batch();
    expect(again.map((r) => r.text)).toEqual(first.map((r) => r.text));
    // A resumed run decodes only the groups that had not finished: the last group alone gives the same answers.
    const tail = await Promise.all(
      prompts.slice(4).map((p, i) => qwen.generate({ messages: user(p), maxTokens: 20 + 3 * (i + 4), frequencyPenalty: 0.5 })),
    );
    expect(tail.map((r) => r.text)).toEqual(first.slice(4).map((r) => r.text));
    // Prompts are evaluated one per batch, so each answer's first token is the one its prompt gives alone.
    for (const [i, p] of prompts.entries()) {
      const alone = await qwen.generate({ messages: user(p), maxTokens: 1 });
      expect(first[i]?.text.startsWith(alone.text)).toBe(true);
    }
  });

  it("shares one loaded model between models naming the same file", async () => {
    const before = loadedModelCount();
    const again = await loadFixtureModel("tiny-qwen2", { sequences: 1 });
    expect(loadedModelCount()).toBe(before);
    await again.close();
    expect(loadedModelCount()).toBe(before);
  });
});

describe("llama-cpp provider errors", () => {
  it("names a missing model path", async () => {
    const missing = path.join(tmpdir(), "no-such-model.gguf");
    await expect(LlamaCppModel.load({ model: missing })).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
      message: expect.stringContaining(missing) as string,
    });
  });

  it("says why a file that is not a model fails to load", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-"));
    const bad = path.join(dir, "bad.gguf");
    writeFileSync(bad, "this is not a gguf file, only some text");
    const err = await LlamaCppModel.load({ model: bad, maxThreads: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IterAlignError);
    expect((err as IterAlignError).code).toBe("MODEL_INVALID");
    expect((err as IterAlignError).message).toContain(bad);
    expect((err as IterAlignError).message).toContain("not a GGUF file");
  });

  it("reports an hf: download without network and suggests a local path", async () => {
    const err = await LlamaCppModel.load({ model: "hf:iteralign-test/does-not-exist-GGUF:Q4_K_M" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IterAlignError);
    expect((err as IterAlignError).code).toBe("MODEL_DOWNLOAD_FAILED");
    expect((err as IterAlignError).message).toMatch(/local path/);
  });

  it("refuses a prompt longer than the context", async () => {
    const m = await LlamaCppModel.load({ model: fixtureModelPath("tiny-llama"), maxThreads: 1, contextSize: 64, sequences: 1 });
    try {
      await expect(m.generate({ messages: user("word ".repeat(2000)) })).rejects.toMatchObject({ code: "GENERATION_FAILED" });
    } finally {
      await m.close();
    }
  });
});
