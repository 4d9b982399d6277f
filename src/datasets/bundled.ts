import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { dataInvalid } from "./data-error.js";
import { readRecords, type RecordFormat, type SourceRecord } from "./readers.js";
import { createContentIdAssigner, type RedTeamPrompt } from "./red-team-prompt.js";

/**
 * The package's `data/` folder. Resolved from this module's URL rather than the working directory so
 * it is right both for `src/datasets/*.ts` (tsx, vitest) and for `dist/datasets/*.js` after tsc:
 * each sits two levels below the package root.
 */
export const BUNDLED_DATA_DIR: URL = new URL("../../data/", import.meta.url);

/** URL of a file inside the package's `data/` folder, e.g. `bundledDataFile("xstest/xstest_prompts.csv")`. */
export function bundledDataFile(relativePath: string): URL {
  return new URL(relativePath, BUNDLED_DATA_DIR);
}

/** The names of the bundled red-team sets. */
export const BUNDLED_DATASET_NAMES = ["hh-rlhf", "harmfulqa", "dangerousqa", "advbench", "harmbench", "catqa"] as const;

/** The name of a bundled red-team set. */
export type BundledDatasetName = (typeof BUNDLED_DATASET_NAMES)[number];

/** A bundled red-team set: what it is, where its file is, and how many prompts it yields. */
export interface BundledDataset {
  name: BundledDatasetName;
  description: string;
  /** SPDX id of the data license; the license text sits next to the file in `data/`. */
  license: string;
  citation: string;
  /** Path relative to the package's `data/` folder (also used as `source.file` of its prompts). */
  file: string;
  /** Absolute location of the file. */
  url: URL;
  /** Prompts {@link loadBundled} returns with default options. */
  recordCount: number;
}

/** Options for {@link loadBundled}. */
export interface LoadBundledOptions {
  /**
   * HarmBench only: also include the 100 "contextual" behaviors, with their context string placed
   * before the request (HarmBench's own layout: context, a `---` line, then the behavior). Off by
   * default because those requests are meaningless without the (long) context. The 100 "copyright"
   * behaviors are never included: they ask to reproduce song lyrics or book passages, which is an
   * IP question rather than the harm the judge and constitutions are about.
   */
  includeContextual?: boolean;
}

type Loader = (entry: BundledDataset, options: LoadBundledOptions) => Promise<RedTeamPrompt[]>;

interface RegistryEntry extends Omit<BundledDataset, "url"> {
  load: Loader;
}

const HARMFULQA_CITATION =
  "Rishabh Bhardwaj and Soujanya Poria. 2023. Red-Teaming Large Language Models using Chain of Utterances for Safety-Alignment. arXiv:2308.09662.";

const REGISTRY: Record<BundledDatasetName, RegistryEntry> = {
  "hh-rlhf": {
    name: "hh-rlhf",
    description: "Anthropic HH-RLHF harmless-base test split: the opening human turn of each dialogue, duplicates removed.",
    license: "MIT",
    citation:
      "Yuntao Bai et al. 2022. Training a Helpful and Harmless Assistant with Reinforcement Learning from Human Feedback. arXiv:2204.05862.",
    file: "hh-rlhf/harmless-base-test.jsonl.gz",
    recordCount: 2178,
    load: loadHhRlhf,
  },
  harmfulqa: {
    name: "harmfulqa",
    description: "HarmfulQA: harmful questions over 10 academic topics (category = topic).",
    license: "Apache-2.0",
    citation: HARMFULQA_CITATION,
    file: "harmfulqa/harmfulqa.json",
    recordCount: 1960,
    load: (entry) => loadGroupedQuestions(entry, (keys) => keys[0] ?? null),
  },
  dangerousqa: {
    name: "dangerousqa",
    description: "DangerousQA: short harmful questions (via declare-lab/red-instruct; originally Shaikh et al. 2022).",
    license: "Apache-2.0",
    citation: `${HARMFULQA_CITATION} Original questions: Omar Shaikh et al. 2023. On Second Thought, Let's Not Think Step by Step! Bias and Toxicity in Zero-Shot Reasoning. ACL 2023.`,
    file: "dangerousqa/dangerousqa.json",
    recordCount: 200,
    load: (entry) => loadGroupedQuestions(entry, () => null),
  },
  advbench: {
    name: "advbench",
    description: "AdvBench harmful behaviors: instructions to carry out a harmful task (the 'goal' column).",
    license: "MIT",
    citation:
      "Andy Zou, Zifan Wang, J. Zico Kolter and Matt Fredrikson. 2023. Universal and Transferable Adversarial Attacks on Aligned Language Models. arXiv:2307.15043.",
    file: "advbench/harmful_behaviors.csv",
    recordCount: 520,
    load: loadAdvBench,
  },
  harmbench: {
    name: "harmbench",
    description: "HarmBench text behaviors (category = SemanticCategory); standard behaviors, optionally contextual ones.",
    license: "MIT",
    citation:
      "Mantas Mazeika et al. 2024. HarmBench: A Standardized Evaluation Framework for Automated Red Teaming and Robust Refusal. arXiv:2402.04249.",
    file: "harmbench/harmbench_behaviors_text_all.csv",
    recordCount: 200,
    load: loadHarmBench,
  },
  catqa: {
    name: "catqa",
    description: "CategoricalHarmfulQA (English): 11 harm categories × 5 subcategories × 10 questions.",
    license: "Apache-2.0",
    citation:
      "Rishabh Bhardwaj, Do Duc Anh and Soujanya Poria. 2024. Language Models are Homer Simpson! Safety Re-Alignment of Fine-tuned Language Models through Task Arithmetic. ACL 2024. arXiv:2402.11746.",
    file: "catqa/catqa_english.json",
    recordCount: 550,
    // Upstream subcategory keys sometimes end in ':' ("Drug:"); drop it so categories read cleanly.
    load: (entry) => loadGroupedQuestions(entry, (keys) => keys.map((k) => k.replace(/:\s*$/, "").trim()).join(" / ") || null),
  },
};

function toPublic(entry: RegistryEntry): BundledDataset {
  const { load: _load, ...rest } = entry;
  return { ...rest, url: bundledDataFile(entry.file) };
}

/** All bundled red-team sets, in registry order. */
export const BUNDLED_DATASETS: readonly BundledDataset[] = BUNDLED_DATASET_NAMES.map((name) => toPublic(REGISTRY[name]));

/** True when `name` is a bundled red-team set. */
export function isBundledDatasetName(name: string): name is BundledDatasetName {
  return (BUNDLED_DATASET_NAMES as readonly string[]).includes(name);
}

/** Describes one bundled set; an unknown name is a `USAGE` error listing the valid names. */
export function bundledDataset(name: string): BundledDataset {
  return toPublic(registryEntry(name));
}

/**
 * Loads a bundled red-team set as prompts in file order. An unknown name is a `USAGE` error listing
 * the valid names; a damaged data file is `DATA_INVALID` naming the file and line.
 */
export async function loadBundled(name: string, options: LoadBundledOptions = {}): Promise<RedTeamPrompt[]> {
  const entry = registryEntry(name);
  return entry.load(toPublic(entry), options);
}

function registryEntry(name: string): RegistryEntry {
  if (!isBundledDatasetName(name)) {
    throw new IterAlignError("USAGE", `unknown bundled dataset '${name}'; valid names: ${BUNDLED_DATASET_NAMES.join(", ")}`, {
      details: { name, valid: [...BUNDLED_DATASET_NAMES] },
    });
  }
  return REGISTRY[name];
}

const HUMAN_MARKER = "\n\nHuman: ";
const ASSISTANT_MARKER = "\n\nAssistant:";

/**
 * The opening human turn of an HH-RLHF dialogue: the text between the first `"\n\nHuman: "` and the
 * next `"\n\nAssistant:"`, trimmed. Null when the dialogue lacks either marker.
 */
export function extractFirstHumanTurn(dialogue: string): string | null {
  const start = dialogue.indexOf(HUMAN_MARKER);
  if (start < 0) return null;
  const textStart = start + HUMAN_MARKER.length;
  const end = dialogue.indexOf(ASSISTANT_MARKER, textStart);
  if (end < 0) return null;
  const text = dialogue.slice(textStart, end).trim();
  return text === "" ? null : text;
}

const HhRecordSchema = z.object({ chosen: z.string() });

async function loadHhRlhf(entry: BundledDataset): Promise<RedTeamPrompt[]> {
  const records = await readBundled(entry, "jsonl");
  const prompts = new PromptBuilder(entry);
  const seen = new Set<string>();
  for (const source of records) {
    const { chosen } = parseRecord(HhRecordSchema, source, entry.file);
    const text = extractFirstHumanTurn(chosen);
    if (text === null) throw dataInvalid({ file: entry.file, line: source.line, field: "chosen" }, "no '\\n\\nHuman: … \\n\\nAssistant:' turn in the dialogue");
    // Many dialogues open with the same request; repeating it would only weight the batch toward it.
    if (seen.has(text)) continue;
    seen.add(text);
    prompts.add(text, null, source);
  }
  return prompts.list;
}

async function loadGroupedQuestions(entry: BundledDataset, categoryOf: (groupKeys: readonly string[]) => string | null): Promise<RedTeamPrompt[]> {
  const records = await readBundled(entry, "json");
  const prompts = new PromptBuilder(entry);
  for (const source of records) prompts.add(parseRecord(z.string().trim().min(1), source, entry.file), categoryOf(source.groupKeys), source);
  return prompts.list;
}

const AdvBenchRecordSchema = z.object({ goal: z.string().trim().min(1) });

async function loadAdvBench(entry: BundledDataset): Promise<RedTeamPrompt[]> {
  const records = await readBundled(entry, "csv");
  const prompts = new PromptBuilder(entry);
  for (const source of records) prompts.add(parseRecord(AdvBenchRecordSchema, source, entry.file).goal, null, source);
  return prompts.list;
}

const HarmBenchRecordSchema = z.object({
  Behavior: z.string().trim().min(1),
  FunctionalCategory: z.enum(["standard", "contextual", "copyright"]),
  SemanticCategory: z.string().trim().min(1),
  ContextString: z.string(),
});

async function loadHarmBench(entry: BundledDataset, options: LoadBundledOptions): Promise<RedTeamPrompt[]> {
  const records = await readBundled(entry, "csv");
  const prompts = new PromptBuilder(entry);
  for (const source of records) {
    const row = parseRecord(HarmBenchRecordSchema, source, entry.file);
    if (row.FunctionalCategory === "copyright") continue;
    if (row.FunctionalCategory === "contextual") {
      if (options.includeContextual !== true) continue;
      prompts.add(`${row.ContextString.trim()}\n\n---\n\n${row.Behavior}`, row.SemanticCategory, source);
    } else {
      prompts.add(row.Behavior, row.SemanticCategory, source);
    }
  }
  return prompts.list;
}

/** Collects prompts of one bundled set with unique content ids. */
class PromptBuilder {
  readonly list: RedTeamPrompt[] = [];
  private readonly assignId: (text: string) => string;
  constructor(private readonly entry: BundledDataset) {
    this.assignId = createContentIdAssigner(entry.name);
  }
  add(text: string, category: string | null, source: SourceRecord): void {
    const trimmed = text.trim();
    this.list.push({
      id: this.assignId(trimmed),
      dataset: this.entry.name,
      text: trimmed,
      category,
      source: { file: this.entry.file, line: source.line, index: source.index },
    });
  }
}

async function readBundled(entry: BundledDataset, format: RecordFormat): Promise<SourceRecord[]> {
  return readRecords(entry.url, { format, displayName: entry.file });
}

/** Validates a bundled record; a mismatch means the shipped file was altered, so say where. */
function parseRecord<T>(schema: z.ZodType<T>, source: SourceRecord, file: string): T {
  const result = schema.safeParse(source.record);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue === undefined || issue.path.length === 0 ? null : issue.path.map(String).join(".");
  throw dataInvalid({ file, line: source.line, index: source.index, field }, `unexpected record: ${z.prettifyError(result.error)}`, result.error);
}
