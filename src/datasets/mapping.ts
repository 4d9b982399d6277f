import path from "node:path";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { dataInvalid } from "./data-error.js";
import { describeType, isPlainObject, RECORD_FORMATS, readRecords, type SourceRecord } from "./readers.js";
import { createContentIdAssigner, DATASET_NAME_PATTERN, type RedTeamPrompt } from "./red-team-prompt.js";

/** `promptField` value meaning "the record itself is the prompt" (e.g. a JSON array of strings). */
export const WHOLE_RECORD = ".";

/**
 * A user's red-team dataset: which file, and which fields hold the prompt, id and category.
 * Field names are dot paths (`meta.question`; numeric segments index arrays); a key that itself
 * contains dots (a CSV header like `prompt.text`) is matched literally first.
 */
export const UserDatasetSpecSchema = z
  .object({
    file: z.string().min(1).describe("Path to the file; a relative path is relative to the config file (to the working directory when the dataset is loaded from code without a baseDir)."),
    format: z.enum(RECORD_FORMATS).optional().describe("Defaults from the extension (`.jsonl`, `.json`, `.csv`, each optionally `.gz`)."),
    promptField: z.string().min(1).describe("Dot path of the prompt text in each record, or \".\" when each record is the prompt string."),
    idField: z.string().min(1).optional().describe("Dot path of a stable id; without it ids are content hashes."),
    categoryField: z.string().min(1).optional().describe("Dot path of a category. Without it, nested JSON group keys (joined by \" / \") are used."),
    name: z.string().regex(DATASET_NAME_PATTERN, "letters, digits, '.', '_' or '-', starting with a letter or digit").optional().describe("Dataset name (goes into prompt ids); defaults to the file name without extensions."),
    path: z.string().min(1).optional().describe("JSON only: dot path to the array/object holding the records."),
  })
  .strict();

/** A validated user dataset spec. */
export type UserDatasetSpec = z.infer<typeof UserDatasetSpecSchema>;

/** Options for {@link loadUserDataset}. */
export interface LoadUserDatasetOptions {
  /** Directory that relative `file` paths resolve against; default `process.cwd()`. */
  baseDir?: string;
}

/**
 * Loads a user's red-team dataset described by a spec (validated here, so it may come straight from
 * YAML/JSON config). Prompts come back in file order. A bad spec is `USAGE`; a record that lacks the
 * mapped prompt (or whose prompt is not a non-empty string) is `DATA_INVALID` naming `file:line` and
 * the field, because silently skipping it would shrink the red-team set without anyone noticing.
 */
export async function loadUserDataset(spec: unknown, options: LoadUserDatasetOptions = {}): Promise<RedTeamPrompt[]> {
  const parsed = UserDatasetSpecSchema.safeParse(spec);
  if (!parsed.success) {
    throw new IterAlignError("USAGE", `invalid dataset spec:\n${z.prettifyError(parsed.error)}`, { cause: parsed.error });
  }
  const { file } = parsed.data;
  const fullPath = path.resolve(options.baseDir ?? process.cwd(), file);
  const records = await readRecords(fullPath, { format: parsed.data.format, displayName: file, path: parsed.data.path });
  return mapRecords(records, {
    dataset: parsed.data.name ?? datasetNameFromFile(file),
    file,
    promptField: parsed.data.promptField,
    idField: parsed.data.idField,
    categoryField: parsed.data.categoryField,
  });
}

/** How {@link mapRecords} turns records into prompts. */
export interface RecordMapping {
  dataset: string;
  /** File name for messages and `source.file`. */
  file: string;
  promptField: string;
  idField?: string;
  categoryField?: string;
}

/** Maps parsed records to red-team prompts; see {@link loadUserDataset} for the rules. */
export function mapRecords(records: Iterable<SourceRecord>, mapping: RecordMapping): RedTeamPrompt[] {
  const { dataset, file, promptField, idField, categoryField } = mapping;
  const contentId = createContentIdAssigner(dataset);
  const idLines = new Map<string, number | null>();
  const prompts: RedTeamPrompt[] = [];
  let categoryFound = false;
  for (const source of records) {
    const at = { file, line: source.line, index: source.index };
    const text = requireString(source.record, promptField, at).trim();
    let id: string;
    if (idField === undefined) {
      id = contentId(text);
    } else {
      id = `${dataset}:${requireId(source.record, idField, at)}`;
      if (idLines.has(id)) throw dataInvalid({ ...at, field: idField }, `duplicate id '${id}' (first seen ${describeWhere(idLines.get(id) ?? null)})`);
      idLines.set(id, source.line);
    }
    let category: string | null = source.groupKeys.length > 0 ? source.groupKeys.join(" / ") : null;
    if (categoryField !== undefined) {
      const found = getField(source.record, categoryField);
      if (found.found) categoryFound = true;
      category = optionalString(found, categoryField, at);
    }
    prompts.push({ id, dataset, text, category, source: { file, line: source.line, index: source.index } });
  }
  // A typo in categoryField would otherwise silently give every prompt a null category.
  if (categoryField !== undefined && prompts.length > 0 && !categoryFound) {
    throw new IterAlignError("USAGE", `${file}: categoryField '${categoryField}' is not present in any record`, {
      details: { file, line: null, field: categoryField },
    });
  }
  return prompts;
}

/** Result of looking up a dot path: distinguishes "missing" from "present but null". */
export type FieldLookup = { found: true; value: unknown } | { found: false };

/**
 * Looks up a dot path in a record. A literal key equal to the whole path wins (CSV headers may contain
 * dots); `"."` returns the record itself. Only own properties are read, so `constructor` or
 * `__proto__` in a path never reaches Object.prototype.
 */
export function getField(record: unknown, fieldPath: string): FieldLookup {
  if (fieldPath === WHOLE_RECORD) return { found: true, value: record };
  if (isPlainObject(record) && Object.hasOwn(record, fieldPath)) return { found: true, value: record[fieldPath] };
  let node: unknown = record;
  for (const segment of fieldPath.split(".")) {
    if (Array.isArray(node) && /^\d+$/.test(segment) && Number(segment) < node.length) node = node[Number(segment)];
    else if (isPlainObject(node) && Object.hasOwn(node, segment)) node = node[segment];
    else return { found: false };
  }
  return { found: true, value: node };
}

interface At {
  file: string;
  line: number | null;
  index: number;
}

function requireString(record: unknown, field: string, at: At): string {
  const found = getField(record, field);
  const where = { ...at, field };
  if (!found.found) throw dataInvalid(where, `field '${field}' is missing`);
  if (typeof found.value !== "string") throw dataInvalid(where, `field '${field}' must be a string, found ${describeType(found.value)}`);
  if (found.value.trim() === "") throw dataInvalid(where, `field '${field}' is empty`);
  return found.value;
}

function requireId(record: unknown, field: string, at: At): string {
  const found = getField(record, field);
  const where = { ...at, field };
  if (!found.found) throw dataInvalid(where, `field '${field}' is missing`);
  // Integer ids are common in CSV-to-JSON exports; accept them as their decimal text.
  if (typeof found.value === "number" && Number.isSafeInteger(found.value)) return String(found.value);
  if (typeof found.value !== "string") throw dataInvalid(where, `field '${field}' must be a string or integer, found ${describeType(found.value)}`);
  const id = found.value.trim();
  if (id === "") throw dataInvalid(where, `field '${field}' is empty`);
  return id;
}

function optionalString(found: FieldLookup, field: string, at: At): string | null {
  if (!found.found || found.value === null) return null;
  if (typeof found.value !== "string") throw dataInvalid({ ...at, field }, `field '${field}' must be a string or null, found ${describeType(found.value)}`);
  const value = found.value.trim();
  return value === "" ? null : value;
}

function describeWhere(line: number | null): string {
  return line === null ? "earlier in the file" : `on line ${line}`;
}

/**
 * Default dataset name: the file's base name without data/gzip extensions, with characters that are
 * not allowed in names replaced by `-` (so `My Prompts.jsonl.gz` → `My-Prompts`).
 */
export function datasetNameFromFile(file: string): string {
  const base = path.basename(file).replace(/\.gz$/i, "").replace(/\.(jsonl|ndjson|json|csv)$/i, "");
  const cleaned = base.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return cleaned === "" ? "user" : cleaned;
}
