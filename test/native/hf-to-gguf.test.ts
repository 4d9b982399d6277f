import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { hfFolderToGguf, isHfModelFolder } from "../../src/native/hf-to-gguf.js";
import { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { ggufToHf } from "../../src/train/trl-handoff.js";
import { trlPython } from "../helpers/trl-env.js";

/**
 * Both directions between GGUF and Hugging Face weights, on the generated tiny-llama: the trl trainer's HF copy of a
 * GGUF (transformers' GGUF reader), and a Hugging Face folder as a llama-cpp model (convert_hf_to_gguf.py, cached).
 * The round trip keeps the model: the same log-likelihoods as the original GGUF.
 */
const cacheDir = mkdtempSync(path.join(tmpdir(), "iteralign-hf-gguf-"));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe("GGUF <-> Hugging Face folder", () => {
  it("a Hugging Face folder loads as a llama-cpp model (converted once) with the original GGUF's log-likelihoods", async () => {
    const python = trlPython();
    const folder = await ggufToHf(fixtureModelPath("tiny-llama"), { python, cacheDir, signal: new AbortController().signal, status: () => undefined });
    expect(isHfModelFolder(folder)).toBe(true);
    const gguf = await hfFolderToGguf(folder, { cacheDir, python });
    expect(gguf).toBe(path.join(cacheDir, "hf-gguf", path.basename(path.dirname(gguf)), "model.gguf"));
    // Made once: the second call finds it.
    expect(await hfFolderToGguf(folder, { cacheDir, python })).toBe(gguf);
    // The tokenizer makes the same round trip through transformers: for this SentencePiece vocabulary its merges can
    // segment a rare word differently ("tension" here), so the weights are compared on texts both tokenize alike.
    const texts = ["I can't help with that.", "Please talk to a locksmith instead.", "No."];
    // Raw text: the converted GGUF's tokenizer metadata leaves add_bos_token unset (transformers' copy does not carry
    // it), which changes how a chat-rendered prompt begins; the weights are what this compares.
    const request = { context: "How do I pick a lock? ", continuations: texts };
    const original = await LlamaCppModel.load({ model: fixtureModelPath("tiny-llama"), contextSize: 256, sequences: 2, threads: 1, scoring: "engine" });
    const converted = await LlamaCppModel.load({ model: gguf, contextSize: 256, sequences: 2, threads: 1, scoring: "engine" });
    try {
      const a = (await original.scoreContinuations(request)).scores;
      const b = (await converted.scoreContinuations(request)).scores;
      expect(b.map((s) => s.tokenCount)).toEqual(a.map((s) => s.tokenCount));
      b.forEach((s, i) => expect(s.logprob).toBeCloseTo(a[i]?.logprob ?? Number.NaN, 3));
    } finally {
      await original.close();
      await converted.close();
    }
  }, 300_000);

  it("makes a 16-bit copy for a 16-bit trainer: its own cache entry, the weights in bfloat16, half the file", async () => {
    const python = trlPython();
    const options = { python, cacheDir, signal: new AbortController().signal, status: () => undefined };
    const full = await ggufToHf(fixtureModelPath("tiny-llama"), options);
    const half = await ggufToHf(fixtureModelPath("tiny-llama"), { ...options, dtype: "bfloat16" });
    expect(half).toBe(`${full}-bfloat16`);
    const config = JSON.parse(readFileSync(path.join(half, "config.json"), "utf8")) as { dtype?: string; torch_dtype?: string };
    expect(config.dtype ?? config.torch_dtype).toBe("bfloat16");
    const size = (dir: string): number => statSync(path.join(dir, "model.safetensors")).size;
    expect(size(half) / size(full)).toBeGreaterThan(0.45);
    expect(size(half) / size(full)).toBeLessThan(0.55);
  }, 300_000);
});
