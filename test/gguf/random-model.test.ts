import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURE_MODELS } from "../../src/gguf/fixture-models.js";
import { GgmlType, GgufType, readGgufHeader } from "../../src/gguf/gguf-file.js";
import { writeRandomModel, type RandomModelSpec } from "../../src/gguf/random-model.js";
import { extractBundledFile } from "../../src/native/llama-bundle.js";

describe("generated GGUF models", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-gguf-"));
  const { vocab, tier: _tier, ...base } = FIXTURE_MODELS["tiny-llama"];
  const spec: RandomModelSpec = { ...base, vocabFile: extractBundledFile(`models/${vocab}`) };

  it("writes the same bytes for the same seed, and other bytes for another seed", () => {
    const a = path.join(dir, "a.gguf");
    const b = path.join(dir, "b.gguf");
    const c = path.join(dir, "c.gguf");
    writeRandomModel(spec, a);
    writeRandomModel(spec, b);
    writeRandomModel({ ...spec, seed: spec.seed + 1 }, c);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false);
  });

  it("copies the vocab file's tokenizer and chat template, and declares the architecture", () => {
    const file = path.join(dir, "d.gguf");
    const { parameters } = writeRandomModel(spec, file);
    const header = readGgufHeader(file);
    const vocabHeader = readGgufHeader(spec.vocabFile);
    expect(header.metadata.get("general.architecture")?.value).toBe("llama");
    expect(header.metadata.get("llama.block_count")?.value).toBe(spec.blockCount);
    for (const key of ["tokenizer.ggml.tokens", "tokenizer.ggml.model", "tokenizer.chat_template"]) {
      expect(header.metadata.get(key), key).toEqual(vocabHeader.metadata.get(key));
    }
    expect(header.metadata.get("tokenizer.ggml.tokens")?.type).toBe(GgufType.ARRAY);
    // 4 blocks of attention + MLP plus untied input and output embeddings.
    expect(parameters).toBeGreaterThan(4e6);
    expect(Number(header.tensorCount)).toBe(3 + 9 * spec.blockCount);
  });

  it("writes Q8_0 weights that quantize the values (benchmark model type)", () => {
    const file = path.join(dir, "q8.gguf");
    writeRandomModel({ ...spec, weightType: GgmlType.Q8_0 }, file);
    const f32 = readFileSync(path.join(dir, "a.gguf")).length;
    const q8 = readFileSync(file).length;
    // Q8_0 stores 32 weights in 34 bytes instead of 128: the matrices shrink to about a quarter.
    expect(q8).toBeLessThan(f32 * 0.35);
    expect(readGgufHeader(file).metadata.get("general.file_type")?.value).toBe(7);
  });
});
