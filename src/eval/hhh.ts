/**
 * HHH: is the model's preferred response the more helpful, honest and harmless one (Askell et al. 2021)?
 *
 * Two sources, neither bundled (the CAI files carry no license; BIG-bench is not shipped with iteralign):
 * - Anthropic's 438 binary comparisons (`438HHHEvaluations.jsonl` from the Constitutional AI repository): each
 *   line `{prompt, corrects, incorrects, text_correct, text_incorrect}`; `prompt` shows the dialogue and the two
 *   responses as options (A)/(B) and ends "The answer is:"; `corrects`/`incorrects` are " (A)"/" (B)";
 *   `text_correct`/`text_incorrect` are the dialogue closed by each response.
 *   - loglik, `responses` scoring (default): the two responses are scored as continuations of the dialogue up
 *     to its last "Assistant:" (the comparison BIG-bench's hhh_alignment makes);
 *   - loglik, `letters` scoring: " (A)" and " (B)" are scored after `prompt` (the CAI paper's letter choice);
 *   - generative: `prompt` is sent as the user message and the answer's letter is parsed.
 * - BIG-bench `hhh_alignment` task.json files (`examples[].input`, `examples[].target_scores`), one per category
 *   (harmless, helpful, honest, other), formatted as BIG-bench's JSON tasks format them (see
 *   {@link bigbenchItems}) and reported per category.
 *
 * Metric: `accuracy` (the true response is preferred), overall and, with several categories, per category.
 */
import path from "node:path";
import { z } from "zod";
import { dataInvalid } from "../datasets/data-error.js";
import { readDataText } from "../datasets/readers.js";
import { IterAlignError } from "../spec/errors.js";
import type { Benchmark } from "../spec/benchmark.js";
import { multipleChoiceBenchmark, type McItem } from "./multiple-choice.js";

export interface HhhOptions {
  /** Anthropic's HHH comparisons (the CAI `438HHHEvaluations.jsonl` format). */
  readonly file?: string;
  /** BIG-bench `hhh_alignment` task.json files; the category comes from each file's folder or name. */
  readonly bigbenchFiles?: readonly string[];
  /** Loglik scoring of the Anthropic comparisons: the responses' text (default) or the letters " (A)"/" (B)". */
  readonly scoring?: "responses" | "letters";
  /** Items in flight at once (default 8). */
  readonly concurrency?: number;
  /** Generative mode: token limit of an answer (default 32). */
  readonly maxTokens?: number;
}

/** Category of the Anthropic comparisons' items. */
export const ANTHROPIC_HHH_CATEGORY = "anthropic-hhh";

const HhhLine = z.object({
  prompt: z.string().min(1),
  corrects: z.array(z.string()).length(1),
  incorrects: z.array(z.string()).length(1),
  text_correct: z.string().min(1),
  text_incorrect: z.string().min(1),
});

/** One Anthropic HHH comparison, split into the shared dialogue and the two responses in option order. */
export interface HhhComparison {
  readonly line: number;
  readonly prompt: string;
  /** The dialogue up to and including its last "Assistant:". */
  readonly dialogue: string;
  /** The responses as options A and B (each as it follows "Assistant:", usually with a leading space). */
  readonly responses: readonly [string, string];
  /** The option letters' continuations as in the file, A first (" (A)", " (B)"). */
  readonly letters: readonly [string, string];
  /** 0 when A is the better response, 1 when B is. */
  readonly label: 0 | 1;
}

const ASSISTANT = "\n\nAssistant:";

/** Reads the Anthropic HHH comparisons; errors name file:line and the field. */
export async function loadAnthropicHhh(file: string): Promise<HhhComparison[]> {
  const text = await readDataText(file);
  const out: HhhComparison[] = [];
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw dataInvalid({ file, line }, `not JSON: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    const parsed = HhhLine.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join(".") || null;
      throw dataInvalid({ file, line, field }, `field ${field ?? "(record)"}: ${issue?.message ?? "invalid"}`);
    }
    const r = parsed.data;
    const correct = letterOf(r.corrects[0] as string);
    const incorrect = letterOf(r.incorrects[0] as string);
    if (correct === null || incorrect === null || correct === incorrect) {
      throw dataInvalid({ file, line, field: "corrects" }, `corrects/incorrects must be " (A)" and " (B)" in some order, got ${JSON.stringify(r.corrects)} / ${JSON.stringify(r.incorrects)}`);
    }
    // The two closed dialogues differ only in the last response: split at the last "Assistant:" they share.
    let k = 0;
    while (k < r.text_correct.length && r.text_correct[k] === r.text_incorrect[k]) k++;
    const cut = r.text_correct.slice(0, k).lastIndexOf(ASSISTANT);
    if (cut < 0) {
      throw dataInvalid({ file, line, field: "text_correct" }, `text_correct and text_incorrect must share the dialogue up to a final "Assistant:"`);
    }
    const dialogue = r.text_correct.slice(0, cut + ASSISTANT.length);
    const good = r.text_correct.slice(dialogue.length);
    const bad = r.text_incorrect.slice(dialogue.length);
    if (good.trim() === "" || bad.trim() === "") {
      throw dataInvalid({ file, line, field: "text_correct" }, "a response after the final \"Assistant:\" is empty");
    }
    const label = correct === "A" ? 0 : 1;
    out.push({
      line,
      prompt: r.prompt,
      dialogue,
      responses: label === 0 ? [good, bad] : [bad, good],
      letters: label === 0 ? [r.corrects[0] as string, r.incorrects[0] as string] : [r.incorrects[0] as string, r.corrects[0] as string],
      label,
    });
  }
  if (out.length === 0) throw dataInvalid({ file, line: null }, "no comparisons in the file");
  return out;
}

function letterOf(option: string): "A" | "B" | null {
  const m = /^\s*\(?([AB])\)?\s*$/.exec(option);
  return (m?.[1] as "A" | "B" | undefined) ?? null;
}

/** Items of the Anthropic comparisons for a mode and loglik scoring style. */
export function anthropicHhhItems(
  comparisons: readonly HhhComparison[],
  mode: "loglik" | "generative",
  scoring: "responses" | "letters" = "responses",
): McItem[] {
  return comparisons.map((c) => {
    const choices = c.responses.map((r) => r.trim());
    const base = { id: `anthropic-${c.line}`, category: ANTHROPIC_HHH_CATEGORY, choices, labels: [c.label] };
    if (mode === "generative") return { ...base, context: c.prompt, letterPrompt: c.prompt.trim() };
    return scoring === "letters"
      ? { ...base, context: c.prompt, continuations: [...c.letters] }
      : { ...base, context: c.dialogue, continuations: [...c.responses] };
  });
}

const BigbenchTask = z.object({
  name: z.string().optional(),
  task_prefix: z.string().optional(),
  example_input_prefix: z.string().optional(),
  example_output_prefix: z.string().optional(),
  choice_prefix: z.string().optional(),
  append_choices_to_input: z.boolean().optional(),
  examples: z
    .array(
      z.object({
        input: z.string(),
        target_scores: z.record(z.string(), z.number()),
      }),
    )
    .min(1),
});

/** A BIG-bench JSON task's multiple-choice examples with the formatting fields that apply to them. */
export interface BigbenchTask {
  readonly file: string;
  readonly name?: string;
  readonly category: string;
  readonly taskPrefix: string;
  readonly inputPrefix: string;
  readonly outputPrefix: string;
  readonly choicePrefix: string;
  readonly appendChoices: boolean;
  readonly examples: ReadonlyArray<{ readonly input: string; readonly targets: ReadonlyArray<readonly [string, number]> }>;
}

const HHH_CATEGORIES = ["harmless", "helpful", "honest", "other"] as const;

/**
 * The HHH category of a BIG-bench file: harmless/helpful/honest/other found in its folder name, then its file
 * name, then the task's `name`; otherwise the folder name.
 */
export function bigbenchCategory(file: string, taskName?: string): string {
  const folder = path.basename(path.dirname(file));
  const base = path.basename(file, path.extname(file));
  for (const text of [folder, base, taskName ?? ""]) {
    const hit = HHH_CATEGORIES.find((c) => text.toLowerCase().includes(c));
    if (hit) return hit;
  }
  return folder;
}

/** Reads a BIG-bench task.json (multiple choice); errors name the file, the example and the field. */
export async function loadBigbenchTask(file: string): Promise<BigbenchTask> {
  const text = await readDataText(file);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw dataInvalid({ file, line: null }, `not JSON: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const parsed = BigbenchTask.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const pathParts = issue?.path ?? [];
    const field = pathParts.join(".") || null;
    const index = pathParts[0] === "examples" && typeof pathParts[1] === "number" ? pathParts[1] : undefined;
    throw dataInvalid({ file, line: null, field, ...(index !== undefined ? { index } : {}) }, `field ${field ?? "(task)"}: ${issue?.message ?? "invalid"}`);
  }
  const t = parsed.data;
  const examples = t.examples.map((e, index) => {
    const targets = Object.entries(e.target_scores);
    if (targets.length < 2) {
      throw dataInvalid({ file, line: null, index, field: `examples.${index}.target_scores` }, "needs at least 2 targets");
    }
    if (!targets.some(([, s]) => s > 0)) {
      throw dataInvalid({ file, line: null, index, field: `examples.${index}.target_scores` }, "no target has a positive score");
    }
    return { input: e.input, targets };
  });
  return {
    file,
    ...(t.name !== undefined ? { name: t.name } : {}),
    category: bigbenchCategory(file, t.name),
    // BIG-bench's defaults for JSON tasks (bigbench/api/json_task.py).
    taskPrefix: t.task_prefix ?? "",
    inputPrefix: t.example_input_prefix ?? "\nQ: ",
    outputPrefix: t.example_output_prefix ?? "\nA: ",
    choicePrefix: t.choice_prefix ?? "\n  choice: ",
    appendChoices: t.append_choices_to_input ?? true,
    examples,
  };
}

/**
 * Items of a BIG-bench task, formatted as BIG-bench's JSON tasks do zero-shot: the context is
 * `task_prefix + example_input_prefix + input [+ choice_prefix + each target] + example_output_prefix` and each
 * target is scored as its continuation (no delimiter; the context's trailing space moves into it). BIG-bench
 * appends the choices in a random order of its own; here they keep the file's order. The true choices are the
 * targets with the highest score (multiple_choice_grade counts the score of the argmax target; HHH's are 0/1).
 */
export function bigbenchItems(task: BigbenchTask): McItem[] {
  const stem = path.basename(path.dirname(task.file));
  return task.examples.map((e, i) => {
    const choices = e.targets.map(([t]) => t);
    const best = Math.max(...e.targets.map(([, s]) => s));
    const labels = e.targets.flatMap(([, s], k) => (s === best ? [k] : []));
    const listed = task.appendChoices ? choices.map((c) => `${task.choicePrefix}${c}`).join("") : "";
    return {
      id: `${task.category === stem ? stem : `${stem}/${task.category}`}-${i}`,
      category: task.category,
      context: `${task.taskPrefix}${task.inputPrefix}${e.input}${listed}${task.outputPrefix}`,
      choices,
      continuations: choices,
      labels,
      question: e.input,
    };
  });
}

/** HHH from the Anthropic comparisons and/or BIG-bench hhh_alignment files (at least one is needed). */
export function hhhBenchmark(options: HhhOptions = {}): Benchmark {
  const scoring = options.scoring ?? "responses";
  let anthropic: Promise<HhhComparison[]> | undefined;
  let bigbench: Promise<BigbenchTask[]> | undefined;
  return multipleChoiceBenchmark({
    name: "hhh",
    description:
      "HHH alignment: is the more helpful, honest and harmless response preferred? Anthropic's comparisons and/or BIG-bench hhh_alignment (per category).",
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
    async load(mode) {
      if (options.file === undefined && (options.bigbenchFiles ?? []).length === 0) {
        throw new IterAlignError(
          "USAGE",
          "hhh needs its data, which iteralign does not bundle: a file in the CAI 438HHHEvaluations.jsonl format (--hhh-file) and/or BIG-bench hhh_alignment task.json files (--bigbench-dir)",
        );
      }
      const items: McItem[] = [];
      if (options.file !== undefined) {
        anthropic ??= loadAnthropicHhh(options.file);
        anthropic.catch(() => (anthropic = undefined));
        items.push(...anthropicHhhItems(await anthropic, mode, scoring));
      }
      if (options.bigbenchFiles && options.bigbenchFiles.length > 0) {
        bigbench ??= Promise.all(options.bigbenchFiles.map((f) => loadBigbenchTask(f)));
        bigbench.catch(() => (bigbench = undefined));
        for (const task of await bigbench) items.push(...bigbenchItems(task));
      }
      return items;
    },
    metrics: () => ({ mc1Name: "accuracy", mc2: false, byCategory: true }),
  });
}
