import { totalmem } from "node:os";
import { readGgufTensorInfos } from "../gguf/gguf-file.js";

/**
 * What full fine-tuning with the `llama-cpp` trainer (iteralign-finetune: F32 weights, AdamW) needs in memory,
 * from the model's shape: every weight in F32 (4 bytes per parameter); for each trainable parameter its gradient
 * and AdamW's two moments (12 bytes; the token embedding is frozen); the activations kept for the backward pass,
 * per position of the training window (the output layer's logits, their softmax and gradient: 12 bytes per
 * vocabulary entry; per layer about 32 bytes per embedding unit and 8 per feed-forward unit); and a fixed
 * overhead for the program itself. Checked against the peak resident memory of real runs (docs/training.md).
 */
export interface TrainingMemoryEstimate {
  readonly parameters: number;
  readonly trainableParameters: number;
  readonly window: number;
  readonly bytes: number;
  /** The parts, in bytes. */
  readonly weights: number;
  readonly optimizer: number;
  readonly activations: number;
  readonly overhead: number;
}

/** Fixed overhead of the training program (runtime, buffers, vocabulary), measured. */
const OVERHEAD_BYTES = 150 * 1024 * 1024;

function metaNumber(metadata: Map<string, { value: unknown }>, key: string): number | undefined {
  const v = metadata.get(key)?.value;
  return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined;
}

/** Estimates the memory of training `modelFile` over windows of `window` positions. */
export function estimateTrainingMemory(modelFile: string, window: number): TrainingMemoryEstimate {
  const { header, tensors } = readGgufTensorInfos(modelFile);
  const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
  const parameters = tensors.reduce((s, t) => s + count(t.dims), 0);
  const embedding = tensors.find((t) => t.name === "token_embd.weight");
  const trainableParameters = parameters - (embedding ? count(embedding.dims) : 0);
  const arch = header.metadata.get("general.architecture")?.value;
  const meta = header.metadata as Map<string, { value: unknown }>;
  const e = (typeof arch === "string" && metaNumber(meta, `${arch}.embedding_length`)) || (embedding?.dims[0] ?? 0);
  const layers = (typeof arch === "string" && metaNumber(meta, `${arch}.block_count`)) || 0;
  const ff = (typeof arch === "string" && metaNumber(meta, `${arch}.feed_forward_length`)) || 4 * e;
  const vocab = embedding?.dims[1] ?? 0;
  const weights = 4 * parameters;
  const optimizer = 12 * trainableParameters;
  const activations = window * (12 * vocab + layers * (32 * e + 8 * ff));
  const bytes = weights + optimizer + activations + OVERHEAD_BYTES;
  return { parameters, trainableParameters, window, bytes, weights, optimizer, activations, overhead: OVERHEAD_BYTES };
}

const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/**
 * Null when the estimate fits the machine's memory (at most 90% of it, the rest for the OS and the loop), else
 * the reason, naming the estimate, the machine's memory and what to use instead.
 */
export function trainingMemoryProblem(estimate: TrainingMemoryEstimate, machineBytes: number = totalmem()): string | null {
  if (estimate.bytes <= 0.9 * machineBytes) return null;
  return (
    `full fine-tuning of this ${(estimate.parameters / 1e9).toFixed(2)}B-parameter model needs about ${gib(estimate.bytes)} ` +
    `(weights ${gib(estimate.weights)}, gradients and AdamW moments ${gib(estimate.optimizer)}, activations over a ${estimate.window}-token window ${gib(estimate.activations)}), ` +
    `and this machine has ${gib(machineBytes)}. Train a LoRA adapter with the trl trainer instead (train.trainer: trl; see docs/training.md), ` +
    "use a hosted trainer, or a smaller model"
  );
}
