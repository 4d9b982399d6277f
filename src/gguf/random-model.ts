import { mulberry32 } from "../util/seeded-random.js";
import { GgmlType, GgufType, readGgufHeader, writeGguf, type GgufTensor, type GgufValue } from "./gguf-file.js";

/** Shape of a random-weight model written for tests and benchmarks. */
export interface RandomModelSpec {
  readonly architecture: "llama" | "qwen2";
  /** A vocab-only GGUF whose tokenizer.* keys (tokenizer and chat template) are copied. */
  readonly vocabFile: string;
  readonly name: string;
  readonly embeddingLength: number;
  readonly blockCount: number;
  readonly feedForwardLength: number;
  readonly headCount: number;
  readonly headCountKv: number;
  readonly contextLength: number;
  /** Type of the 2-D weight matrices; norms and biases are always F32. */
  readonly weightType: GgmlType;
  readonly seed: number;
  /** Standard deviation of the random weights. */
  readonly initStd?: number;
  /** Chat template to set when the vocab file has none. */
  readonly chatTemplate?: string;
  /** Set `chatTemplate` even when the vocab file has one (a model with its own template, e.g. a guard's). */
  readonly replaceChatTemplate?: boolean;
}

/** llama.cpp's `general.file_type` for each weight type (LLAMA_FTYPE_*). */
const FILE_TYPE: Record<GgmlType, number> = { [GgmlType.F32]: 0, [GgmlType.F16]: 1, [GgmlType.Q8_0]: 7 };

function hashName(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

function normalFill(seed: number, std: number): (out: Float32Array) => void {
  return (out) => {
    const rand = mulberry32(seed);
    for (let i = 0; i < out.length; i += 2) {
      const u1 = Math.max(rand(), 1e-12);
      const u2 = rand();
      const r = Math.sqrt(-2 * Math.log(u1)) * std;
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
  };
}

const constantFill =
  (v: number) =>
  (out: Float32Array): void => {
    out.fill(v);
  };

/** Number of parameters a spec produces (with the vocab size of its vocab file). */
export function countParameters(spec: RandomModelSpec, vocabSize: number): number {
  const e = spec.embeddingLength;
  const kv = (e / spec.headCount) * spec.headCountKv;
  const perBlock =
    2 * e + e * e * 2 + e * kv * 2 + 3 * e * spec.feedForwardLength + (spec.architecture === "qwen2" ? e + 2 * kv : 0);
  const output = spec.architecture === "llama" ? vocabSize * e : 0;
  return vocabSize * e + output + e + spec.blockCount * perBlock;
}

/**
 * Writes a llama- or qwen2-architecture GGUF with random weights and the real tokenizer of a vocab GGUF.
 * Same spec and seed, same bytes.
 */
export function writeRandomModel(spec: RandomModelSpec, outFile: string): { parameters: number } {
  const vocab = readGgufHeader(spec.vocabFile);
  const tokens = vocab.metadata.get("tokenizer.ggml.tokens");
  if (!tokens || tokens.type !== GgufType.ARRAY) throw new Error(`${spec.vocabFile} has no tokenizer.ggml.tokens`);
  const nVocab = tokens.value.length;
  const arch = spec.architecture;
  const e = spec.embeddingLength;
  const headDim = e / spec.headCount;
  const kv = headDim * spec.headCountKv;
  const u32 = (value: number): GgufValue => ({ type: GgufType.UINT32, value });
  const f32 = (value: number): GgufValue => ({ type: GgufType.FLOAT32, value });
  const str = (value: string): GgufValue => ({ type: GgufType.STRING, value });

  const md = new Map<string, GgufValue>();
  md.set("general.architecture", str(arch));
  md.set("general.name", str(spec.name));
  md.set("general.file_type", u32(FILE_TYPE[spec.weightType]));
  md.set(`${arch}.context_length`, u32(spec.contextLength));
  md.set(`${arch}.embedding_length`, u32(e));
  md.set(`${arch}.block_count`, u32(spec.blockCount));
  md.set(`${arch}.feed_forward_length`, u32(spec.feedForwardLength));
  md.set(`${arch}.attention.head_count`, u32(spec.headCount));
  md.set(`${arch}.attention.head_count_kv`, u32(spec.headCountKv));
  md.set(`${arch}.attention.layer_norm_rms_epsilon`, f32(1e-6));
  md.set(`${arch}.rope.dimension_count`, u32(headDim));
  md.set(`${arch}.rope.freq_base`, f32(arch === "qwen2" ? 1000000 : 10000));
  for (const [key, value] of vocab.metadata) {
    if (key.startsWith("tokenizer.")) md.set(key, value);
  }
  if ((spec.replaceChatTemplate === true || !md.has("tokenizer.chat_template")) && spec.chatTemplate) md.set("tokenizer.chat_template", str(spec.chatTemplate));

  const std = spec.initStd ?? 0.02;
  const seedFor = (name: string): number => (hashName(name) ^ Math.imul(spec.seed, 0x9e3779b1)) >>> 0;
  const mat = (name: string, dims: number[]): GgufTensor => ({
    name,
    dims,
    type: spec.weightType,
    fill: normalFill(seedFor(name), std),
  });
  const norm = (name: string, n: number): GgufTensor => ({ name, dims: [n], type: GgmlType.F32, fill: constantFill(1) });
  const bias = (name: string, n: number): GgufTensor => ({
    name,
    dims: [n],
    type: GgmlType.F32,
    fill: normalFill(seedFor(name), std),
  });

  const tensors: GgufTensor[] = [mat("token_embd.weight", [e, nVocab]), norm("output_norm.weight", e)];
  // qwen2 ties the output projection to the token embedding when output.weight is absent.
  if (arch === "llama") tensors.push(mat("output.weight", [e, nVocab]));
  for (let i = 0; i < spec.blockCount; i++) {
    const b = `blk.${i}`;
    tensors.push(
      norm(`${b}.attn_norm.weight`, e),
      mat(`${b}.attn_q.weight`, [e, e]),
      mat(`${b}.attn_k.weight`, [e, kv]),
      mat(`${b}.attn_v.weight`, [e, kv]),
      mat(`${b}.attn_output.weight`, [e, e]),
      norm(`${b}.ffn_norm.weight`, e),
      mat(`${b}.ffn_gate.weight`, [e, spec.feedForwardLength]),
      mat(`${b}.ffn_up.weight`, [e, spec.feedForwardLength]),
      mat(`${b}.ffn_down.weight`, [spec.feedForwardLength, e]),
    );
    if (arch === "qwen2") {
      tensors.push(bias(`${b}.attn_q.bias`, e), bias(`${b}.attn_k.bias`, kv), bias(`${b}.attn_v.bias`, kv));
    }
  }
  writeGguf(outFile, md, tensors);
  return { parameters: countParameters(spec, nVocab) };
}
