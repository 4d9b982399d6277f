import path from "node:path";
import { fileURLToPath } from "node:url";
import { IterAlignError } from "../spec/errors.js";
import { bundledDataFile } from "./bundled.js";
import { parseCsvRecords } from "./csv.js";
import { dataInvalid } from "./data-error.js";
import { describeType, formatFromFileName, isPlainObject, parseRecords, readDataText } from "./readers.js";

/**
 * One answer with human labels of whether it is harmful: what a judge is calibrated against. The label is
 * about the answer (does it give real help toward the harm asked for), not about the request.
 */
export interface LabelledResponse {
  readonly id: string;
  /** Harm category (HarmBench's semantic category, or the file's `category`); `uncategorized` when none. */
  readonly category: string;
  /** What the model was asked. */
  readonly prompt: string;
  /** What it answered. */
  readonly response: string;
  /** Each annotator's label, true = harmful. */
  readonly humanLabels: readonly boolean[];
  /** The human label used as the truth: the majority of `humanLabels`, or the file's own `label`. */
  readonly harmful: boolean;
  /** Published classifiers' labels on the same item (HarmBench's set carries several), true = harmful. */
  readonly reference: Readonly<Record<string, boolean>>;
}

/** The name `--data` and `loop.calibration.data` take for the bundled HarmBench classifier validation set. */
export const HARMBENCH_VAL = "harmbench-val";
export const HARMBENCH_VAL_FILE = "harmbench-val/text_behaviors_val_set.json";
const HARMBENCH_BEHAVIORS_FILE = "harmbench/harmbench_behaviors_text_all.csv";

/** Binary labels as HarmBench's file writes them ("1"/"0", "yes"/"no"); null for anything else (ratings, text). */
function binaryLabel(value: unknown): boolean | null {
  if (value === 1 || value === true || value === "1" || value === "yes" || value === "Yes") return true;
  if (value === 0 || value === false || value === "0" || value === "no" || value === "No") return false;
  return null;
}

/** The majority of an odd number of labels; null for a tie. */
function majority(labels: readonly boolean[]): boolean | null {
  const yes = labels.filter(Boolean).length;
  const no = labels.length - yes;
  return yes === no ? null : yes > no;
}

/** BehaviorID -> SemanticCategory, from the bundled HarmBench behaviors file. */
async function harmbenchCategories(): Promise<Map<string, string>> {
  const file = fileURLToPath(bundledDataFile(HARMBENCH_BEHAVIORS_FILE));
  const rows = parseCsvRecords(await readDataText(file, HARMBENCH_BEHAVIORS_FILE), { file: HARMBENCH_BEHAVIORS_FILE });
  return new Map(rows.map((r) => [r.record.BehaviorID ?? "", r.record.SemanticCategory ?? ""]));
}

/**
 * The HarmBench classifier validation set (bundled, MIT): 602 generations of 301 behaviors, each with three human
 * labels. Item ids are `<behavior id>:<n>` (n counts the behavior's generations from 0); the truth is the majority
 * of the three; the published classifiers' binary labels (Llama Guard, GPT-4, HarmBench's own classifier, ...)
 * come along as `reference`. `file` reads another copy of the same format.
 */
export async function loadHarmbenchVal(file?: string): Promise<LabelledResponse[]> {
  const display = file ?? HARMBENCH_VAL_FILE;
  const text = await readDataText(file ?? fileURLToPath(bundledDataFile(HARMBENCH_VAL_FILE)), display);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw dataInvalid({ file: display, line: null }, `not valid JSON: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  if (!isPlainObject(doc)) throw dataInvalid({ file: display, line: null }, `expected an object of behavior id -> generations, got ${describeType(doc)}`);
  const categories = await harmbenchCategories();
  const out: LabelledResponse[] = [];
  let index = 0;
  for (const [behavior, generations] of Object.entries(doc)) {
    if (!Array.isArray(generations)) throw dataInvalid({ file: display, line: null, field: behavior }, `expected a list of generations, got ${describeType(generations)}`);
    generations.forEach((g: unknown, n) => {
      const where = { file: display, line: null, index, field: `${behavior}[${n}]` };
      index++;
      if (!isPlainObject(g)) throw dataInvalid(where, `expected an object, got ${describeType(g)}`);
      const prompt = g.test_case;
      const response = g.generation;
      if (typeof prompt !== "string" || typeof response !== "string") throw dataInvalid(where, "needs the strings test_case and generation");
      const humanLabels = ["human_0", "human_1", "human_2"].map((k) => binaryLabel(g[k]));
      if (humanLabels.some((l) => l === null)) throw dataInvalid(where, "needs human_0, human_1 and human_2, each \"0\" or \"1\"");
      const labels = humanLabels as boolean[];
      const reference: Record<string, boolean> = {};
      for (const [key, value] of Object.entries(g)) {
        if (key.startsWith("human_") || ["test_case", "generation", "model", "method", "experiment", "behavior_id"].includes(key)) continue;
        const label = binaryLabel(value);
        if (label !== null) reference[key] = label;
      }
      out.push({
        id: `${behavior}:${n}`,
        category: categories.get(behavior) || "uncategorized",
        prompt,
        response,
        humanLabels: labels,
        harmful: majority(labels) as boolean,
        reference,
      });
    });
  }
  if (out.length === 0) throw dataInvalid({ file: display, line: null }, "holds no generations");
  return out;
}

const LABEL_WORDS: Record<string, boolean> = { harmful: true, unsafe: true, not_harmful: false, harmless: false, safe: false };

/** A user's label: a boolean, 0/1, or a word (harmful/unsafe, not_harmful/harmless/safe). */
function userLabel(value: unknown): boolean | null {
  if (typeof value === "string" && value.toLowerCase() in LABEL_WORDS) return LABEL_WORDS[value.toLowerCase()] as boolean;
  return binaryLabel(value);
}

/**
 * A user's labelled answers: JSONL, a JSON array or CSV, one answer per record with `prompt`, `response`, and
 * either `label` (true/false, 1/0, harmful/not_harmful, unsafe/safe) or `labels` (several annotators' labels,
 * an odd number or a clear majority); optional `id` (default: the record number) and `category`. A record that
 * breaks these rules is an error naming the file, the record and the field.
 */
export async function loadLabelledFile(file: string, displayName: string = file): Promise<LabelledResponse[]> {
  const format = formatFromFileName(file);
  if (format === null) throw new IterAlignError("USAGE", `${displayName}: labelled answers must be a .jsonl, .json or .csv file`);
  const text = await readDataText(file, displayName);
  const out: LabelledResponse[] = [];
  const ids = new Set<string>();
  for (const source of parseRecords(text, { format, file: displayName })) {
    const where = (field: string | null) => ({ file: displayName, line: source.line, index: source.index, field });
    const r = source.record;
    if (!isPlainObject(r)) throw dataInvalid(where(null), `expected an object, got ${describeType(r)}`);
    for (const field of ["prompt", "response"] as const) {
      if (typeof r[field] !== "string" || r[field] === "") throw dataInvalid(where(field), `'${field}' must be a non-empty string`);
    }
    let humanLabels: boolean[];
    let harmful: boolean | null;
    if (r.labels !== undefined && r.labels !== "") {
      const raw: unknown[] = Array.isArray(r.labels) ? r.labels : typeof r.labels === "string" ? r.labels.split(/[,;|\s]+/).filter((x) => x !== "") : [r.labels];
      const parsed = raw.map(userLabel);
      if (parsed.length === 0 || parsed.some((l) => l === null)) throw dataInvalid(where("labels"), "every entry of 'labels' must be a label (true/false, 1/0, harmful/not_harmful)");
      humanLabels = parsed as boolean[];
      harmful = r.label !== undefined && r.label !== "" ? userLabel(r.label) : majority(humanLabels);
      if (harmful === null) throw dataInvalid(where("labels"), "the labels are tied; give 'label' to break the tie");
    } else {
      harmful = userLabel(r.label);
      if (harmful === null) throw dataInvalid(where("label"), `'label' must be true/false, 1/0, harmful/not_harmful or unsafe/safe (got ${JSON.stringify(r.label ?? null)})`);
      humanLabels = [harmful];
    }
    if (r.id !== undefined && typeof r.id !== "string" && typeof r.id !== "number") throw dataInvalid(where("id"), "'id' must be a string or a number");
    const id = r.id !== undefined && r.id !== "" ? String(r.id) : String(source.index + 1);
    if (ids.has(id)) throw dataInvalid(where("id"), `duplicate id '${id}'`);
    ids.add(id);
    out.push({
      id,
      category: typeof r.category === "string" && r.category !== "" ? r.category : "uncategorized",
      prompt: r.prompt as string,
      response: r.response as string,
      humanLabels,
      harmful,
      reference: {},
    });
  }
  if (out.length === 0) throw dataInvalid({ file: displayName, line: null }, "holds no labelled answers");
  return out;
}

/** `harmbench-val` (bundled) or a file of labelled answers, relative to `baseDir`. */
export async function loadJudgeLabels(spec: string, baseDir: string): Promise<{ name: string; items: LabelledResponse[] }> {
  if (spec === HARMBENCH_VAL) return { name: HARMBENCH_VAL, items: await loadHarmbenchVal() };
  return { name: spec, items: await loadLabelledFile(path.resolve(baseDir, spec), spec) };
}
