import { z } from "zod";
import { sha256Hex } from "../util/canonical-json.js";

/**
 * Dataset names end up inside prompt ids (`<dataset>:<hash>`), file names and CLI flags, so they are
 * kept to a conservative alphabet: no `:` (the id separator) and no whitespace.
 */
export const DATASET_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Where a prompt came from: the file (as the user named it, or relative to `data/`), its line and record index. */
export const PromptSourceSchema = z.object({
  /** File name as given by the user, or the path relative to the package's `data/` folder for bundled sets. */
  file: z.string().min(1),
  /** 1-based line where the record starts (JSONL, CSV); null for JSON documents, where lines are not tracked. */
  line: z.number().int().positive().nullable(),
  /** 0-based position of the record among all records of the file, before any filtering or dedupe. */
  index: z.number().int().nonnegative(),
});

/** One red-team prompt, whatever dataset it came from. */
export const RedTeamPromptSchema = z.object({
  /** Stable id: `<dataset>:<first 16 hex of sha256(text)>`, or `<dataset>:<idField value>` for user sets. */
  id: z.string().min(1),
  /** Name of the dataset (bundled name or the user's `name`). */
  dataset: z.string().regex(DATASET_NAME_PATTERN),
  /** The prompt text, trimmed of surrounding whitespace; never empty. */
  text: z.string().min(1),
  /** Harm category when the dataset has one (e.g. HarmfulQA topic), else null. */
  category: z.string().min(1).nullable(),
  source: PromptSourceSchema,
});

/** One red-team prompt, whatever dataset it came from. */
export type RedTeamPrompt = z.infer<typeof RedTeamPromptSchema>;

/** Where a prompt came from. */
export type PromptSource = z.infer<typeof PromptSourceSchema>;

/**
 * The content-derived id of a prompt. Hashing the text (not the position) keeps the id stable when a
 * dataset file is reordered or other records are added, so stored results stay attached to their prompt.
 */
export function contentPromptId(dataset: string, text: string): string {
  return `${dataset}:${sha256Hex(text).slice(0, 16)}`;
}

/**
 * Returns a function that hands out content ids for one dataset and keeps them unique: some public
 * sets repeat a question verbatim (HarmfulQA has 22 repeats across subtopics), and two rows must never
 * share an id in the run store. The first occurrence gets the plain content id; the k-th repeat gets
 * `-k` appended, which stays stable as long as the file's order does.
 */
export function createContentIdAssigner(dataset: string): (text: string) => string {
  const seen = new Map<string, number>();
  return (text) => {
    const base = contentPromptId(dataset, text);
    const count = (seen.get(base) ?? 0) + 1;
    seen.set(base, count);
    return count === 1 ? base : `${base}-${count}`;
  };
}
