/**
 * Bring-your-own multiple choice: a JSONL file, one item per line, scored like TruthfulQA.
 *
 *   {"context": "Q: What is the capital of France?\nA:", "choices": ["Paris", "Lyon"], "label": 0}
 *   {"context": "...", "choices": ["...", "...", "..."], "labels": [0, 2]}
 *
 * Fields: `context` (raw text the choices continue), `choices` (2 or more non-empty strings), and either
 * `label` (index of the one true choice) or `labels` (indices of several true choices). Optional: `id`
 * (string or number; default the line number), `category` (reported separately when there are several),
 * `question` (shown above the lettered options in generative mode instead of the context).
 * Each choice is scored as the continuation " <choice>" (lm-evaluation-harness's target delimiter).
 *
 * Metrics: `mc1` (the highest-likelihood choice is a true one) and, in loglik mode, `mc2` (probability mass on
 * the true choices), also with a single `label`: MC2 is then that choice's normalized probability.
 */
import path from "node:path";
import { dataInvalid } from "../datasets/data-error.js";
import { readDataText } from "../datasets/readers.js";
import type { Benchmark } from "../spec/benchmark.js";
import { multipleChoiceBenchmark, type McItem } from "./multiple-choice.js";

export interface CustomMcOptions {
  /** The JSONL file. */
  readonly file: string;
  /** Benchmark name after `mc:` (default: the file name without extension). */
  readonly name?: string;
  /** Put between the context and each choice. Default " ". */
  readonly targetDelimiter?: string;
  /** Items in flight at once (default 8). */
  readonly concurrency?: number;
  /** Generative mode: token limit of an answer (default 32). */
  readonly maxTokens?: number;
}

/** Reads a multiple-choice JSONL; a bad line is a DATA_INVALID error naming `file:line` and the field. */
export async function loadMultipleChoiceJsonl(file: string): Promise<McItem[]> {
  const text = await readDataText(file);
  const items: McItem[] = [];
  const ids = new Map<string, number>();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = i + 1;
    if (raw.trim() === "") continue;
    const fail = (field: string | null, problem: string): never => {
      throw dataInvalid({ file, line, field }, field === null ? problem : `field '${field}': ${problem}`);
    };
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      fail(null, `not JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail(null, "a line must be a JSON object");
    const r = value as Record<string, unknown>;

    if (typeof r.context !== "string") fail("context", "must be a string");
    const context = r.context as string;
    if (context.trim() === "") fail("context", "is empty");

    if (!Array.isArray(r.choices)) fail("choices", "must be an array of strings");
    const choices = r.choices as unknown[];
    if (choices.length < 2) fail("choices", `needs at least 2 choices, got ${choices.length}`);
    choices.forEach((c, k) => {
      if (typeof c !== "string" || c.trim() === "") fail(`choices[${k}]`, "must be a non-empty string");
    });
    if (new Set(choices).size !== choices.length) fail("choices", "holds the same choice twice");

    const index = (v: unknown, field: string): number => {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= choices.length) {
        fail(field, `must be a choice index 0..${choices.length - 1}, got ${JSON.stringify(v)}`);
      }
      return v as number;
    };
    let labels: number[];
    if (r.label !== undefined && r.labels !== undefined) fail("labels", "give 'label' or 'labels', not both");
    if (r.labels !== undefined) {
      if (!Array.isArray(r.labels) || r.labels.length === 0) fail("labels", "must be a non-empty array of choice indices");
      labels = (r.labels as unknown[]).map((v, k) => index(v, `labels[${k}]`));
      if (new Set(labels).size !== labels.length) fail("labels", "names a choice twice");
      if (labels.length === choices.length) fail("labels", "every choice is true: the item measures nothing");
    } else if (r.label !== undefined) {
      labels = [index(r.label, "label")];
    } else {
      labels = fail("label", "missing: give 'label' (one true choice) or 'labels' (several)");
    }

    let id = String(line);
    if (typeof r.id === "string" || typeof r.id === "number") id = String(r.id);
    else if (r.id !== undefined) fail("id", "must be a string or a number");
    const first = ids.get(id);
    if (first !== undefined) fail("id", `'${id}' is also the id on line ${first}`);
    ids.set(id, line);
    if (r.category !== undefined && typeof r.category !== "string") fail("category", "must be a string");
    if (r.question !== undefined && typeof r.question !== "string") fail("question", "must be a string");

    items.push({
      id,
      context,
      choices: choices as string[],
      labels,
      ...(typeof r.category === "string" ? { category: r.category } : {}),
      ...(typeof r.question === "string" ? { question: r.question } : {}),
    });
  }
  if (items.length === 0) throw dataInvalid({ file, line: null }, "no items in the file");
  return items;
}

/** A bring-your-own multiple-choice benchmark named `mc:<name>`. */
export function multipleChoiceJsonlBenchmark(options: CustomMcOptions): Benchmark {
  const name = options.name ?? path.basename(options.file).replace(/\.jsonl?$/i, "");
  let cache: Promise<McItem[]> | undefined;
  return multipleChoiceBenchmark({
    name: `mc:${name}`,
    description: `Multiple choice from ${options.file}: MC1 and MC2, scored like TruthfulQA.`,
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.targetDelimiter !== undefined ? { targetDelimiter: options.targetDelimiter } : {}),
    ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
    async load() {
      cache ??= loadMultipleChoiceJsonl(options.file);
      cache.catch(() => (cache = undefined));
      return cache;
    },
    metrics: (mode) => ({ mc1Name: "mc1", mc2: mode === "loglik", byCategory: true }),
  });
}
