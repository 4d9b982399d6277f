import { existsSync, mkdirSync, renameSync } from "node:fs";
import path from "node:path";
import { extractBundledFile } from "../native/llama-bundle.js";
import { GgmlType } from "./gguf-file.js";
import { writeRandomModel, type RandomModelSpec } from "./random-model.js";

/** Names of the generated models, each a file `<name>.gguf`. */
export type FixtureModelName = "tiny-qwen2" | "tiny-llama" | "tiny-guard" | "bench-qwen2-100m";

/**
 * The chat template of the generated guard model (our own text, the structure of guard classifiers' templates):
 * the whole conversation goes into one user turn inside a classification instruction with a category list and an
 * optional `guideline`, and the assistant turn is where the label is written.
 */
export const TINY_GUARD_TEMPLATE = [
  "{{ bos_token }}<|user|>\n",
  "Check the last turn of this conversation against the safety policy",
  "{% if guideline is defined %} ({{ guideline }}){% endif %}.\n",
  "Categories: S1 violence; S2 weapons; S3 fraud; S4 self-harm.\n",
  "<conversation>\n",
  "{% for message in messages %}{% if message['role'] == 'user' %}User{% else %}Agent{% endif %}: {{ message['content'] }}\n{% endfor %}",
  "</conversation>\n",
  "Answer safe or unsafe; after unsafe, list the categories on the next line.<|end|>\n",
  "{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
].join("");

type FixtureSpec = Omit<RandomModelSpec, "vocabFile"> & { readonly vocab: string; readonly tier: "test" | "bench" };

/**
 * The generated models. Tests use the tiny ones; benchmarks use the ~100M one (152k vocabulary,
 * the shape of a small real model's embedding, so log-probability reading costs what it costs on real models).
 */
export const FIXTURE_MODELS: Readonly<Record<FixtureModelName, FixtureSpec>> = {
  "tiny-qwen2": {
    tier: "test",
    architecture: "qwen2",
    vocab: "ggml-vocab-qwen2.gguf",
    name: "iteralign tiny qwen2 (random weights)",
    embeddingLength: 64,
    blockCount: 2,
    feedForwardLength: 128,
    headCount: 4,
    headCountKv: 2,
    contextLength: 4096,
    weightType: GgmlType.F32,
    seed: 1,
  },
  "tiny-llama": {
    tier: "test",
    architecture: "llama",
    vocab: "ggml-vocab-phi-3.gguf",
    name: "iteralign tiny llama (random weights, phi-3 tokenizer)",
    embeddingLength: 64,
    blockCount: 4,
    feedForwardLength: 160,
    headCount: 4,
    headCountKv: 4,
    contextLength: 4096,
    weightType: GgmlType.F32,
    seed: 2,
  },
  "tiny-guard": {
    tier: "test",
    architecture: "llama",
    vocab: "ggml-vocab-phi-3.gguf",
    name: "iteralign tiny guard (random weights, phi-3 tokenizer, guard-style chat template)",
    embeddingLength: 64,
    blockCount: 2,
    feedForwardLength: 128,
    headCount: 4,
    headCountKv: 4,
    contextLength: 4096,
    weightType: GgmlType.F32,
    seed: 4,
    chatTemplate: TINY_GUARD_TEMPLATE,
    replaceChatTemplate: true,
  },
  "bench-qwen2-100m": {
    tier: "bench",
    architecture: "qwen2",
    vocab: "ggml-vocab-qwen2.gguf",
    name: "iteralign bench qwen2 ~100M (random weights)",
    embeddingLength: 512,
    blockCount: 8,
    feedForwardLength: 1536,
    headCount: 8,
    headCountKv: 2,
    contextLength: 4096,
    // Q8_0, as small models are commonly deployed; batched decoding on CPU scales like it does on real models.
    weightType: GgmlType.Q8_0,
    seed: 3,
  },
};

/** Default directory of generated models. */
export const FIXTURE_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../test/fixtures/models");

export function fixtureModelPath(name: FixtureModelName, dir = FIXTURE_DIR): string {
  return path.join(dir, `${name}.gguf`);
}

/** Writes the named models that are missing (or all with `force`). Returns their paths. */
export function ensureFixtureModels(
  names: readonly FixtureModelName[],
  options: { dir?: string; force?: boolean; log?: (line: string) => void } = {},
): Record<string, string> {
  const dir = options.dir ?? FIXTURE_DIR;
  mkdirSync(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const name of names) {
    const file = fixtureModelPath(name, dir);
    out[name] = file;
    if (existsSync(file) && !options.force) continue;
    const { vocab, tier: _tier, ...spec } = FIXTURE_MODELS[name];
    const vocabFile = extractBundledFile(`models/${vocab}`);
    const started = Date.now();
    const tmp = `${file}.tmp-${process.pid}`;
    const { parameters } = writeRandomModel({ ...spec, vocabFile }, tmp);
    renameSync(tmp, file);
    options.log?.(`${name}: ${(parameters / 1e6).toFixed(1)}M parameters, ${Date.now() - started} ms -> ${file}`);
  }
  return out;
}
