import { basename } from "node:path";
import { parse as parseYaml } from "yaml";
import { dataInvalid } from "../datasets/data-error.js";
import { readDataText } from "../datasets/readers.js";
import type { PrincipleInput } from "./pool.js";

/**
 * Seed constitutions: principles the pool starts from before the oracle discovers any. Three file
 * formats are read:
 * - `principles`: our own YAML or JSON, a list of `{title, text}`.
 * - `cai-critique-revision`: Anthropic's Constitutional AI `CritiqueRevisionInstructions.json`, an
 *   object of entries `{prompt: [critique request], edit_request}`.
 * - `cai-rl-madison`: Anthropic's `RLMadisonInstructions.json`, a list of comparison instructions.
 * The Anthropic files are read from wherever the user keeps them; iteralign does not ship them.
 */

/** Seed file formats {@link parseSeeds} understands. */
export const SEED_FORMATS = ["principles", "cai-critique-revision", "cai-rl-madison"] as const;
export type SeedFormat = (typeof SEED_FORMATS)[number];

/** Options for {@link parseSeeds}. */
export interface ParseSeedsOptions {
  /** File name for messages; also picks the syntax (`.json`: JSON, anything else: YAML). */
  readonly file: string;
  /** Which format to expect; `auto` (default) tells them apart by shape. */
  readonly format?: SeedFormat | "auto";
}

/** Options for {@link loadSeeds}. */
export interface LoadSeedsOptions {
  readonly format?: SeedFormat | "auto";
  /** Name used in messages; defaults to the path as given. */
  readonly displayName?: string;
}

/** Reads a seed file (see {@link parseSeeds}). */
export async function loadSeeds(path: string, options: LoadSeedsOptions = {}): Promise<PrincipleInput[]> {
  const file = options.displayName ?? path;
  const text = await readDataText(path, file);
  return parseSeeds(text, { file, format: options.format });
}

/**
 * Parses seed principles from file text. Errors are DATA_INVALID and name the file and the entry
 * (1-based position, or the key for the critique/revision object), with `details.field` the path
 * of the offending value. A file with no principles is an error: it is almost always a wrong path.
 */
export function parseSeeds(text: string, options: ParseSeedsOptions): PrincipleInput[] {
  const { file } = options;
  const document = parseDocument(text.replace(/^\uFEFF/, ""), file);
  const format = options.format === undefined || options.format === "auto" ? detectFormat(document, file) : options.format;
  const principles = parseFormat(document, format, file);
  if (principles.length === 0) throw dataInvalid({ file, line: null }, "contains no principles");
  return principles;
}

/**
 * Tells the formats apart by shape: a list of strings is RL-CAI, any other list is ours, an object
 * whose entries have `edit_request` is critique/revision.
 */
export function detectSeedFormat(document: unknown): SeedFormat | null {
  if (Array.isArray(document)) return document.length > 0 && document.every((item) => typeof item === "string") ? "cai-rl-madison" : "principles";
  if (isRecord(document)) {
    const entries = Object.values(document);
    if (entries.length > 0 && entries.every((entry) => isRecord(entry) && "edit_request" in entry)) return "cai-critique-revision";
  }
  return null;
}

function detectFormat(document: unknown, file: string): SeedFormat {
  const format = detectSeedFormat(document);
  if (format === null) {
    throw dataInvalid(
      { file, line: null },
      `not a seed file in a known format (expected a list of {title, text}, a list of strings, or an object of {prompt, edit_request}); found ${describeType(document)}`,
    );
  }
  return format;
}

function parseDocument(text: string, file: string): unknown {
  try {
    // YAML 1.2 would also read JSON, but JSON.parse gives JSON users the errors they expect.
    return file.toLowerCase().endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw dataInvalid({ file, line: null }, `cannot parse: ${error instanceof Error ? error.message : String(error)}`, error);
  }
}

function parseFormat(document: unknown, format: SeedFormat, file: string): PrincipleInput[] {
  switch (format) {
    case "principles":
      return parsePrincipleList(document, file);
    case "cai-critique-revision":
      return parseCritiqueRevision(document, file);
    case "cai-rl-madison":
      return parseRlMadison(document, file);
  }
}

const PRINCIPLE_KEYS = new Set(["title", "text"]);

function parsePrincipleList(document: unknown, file: string): PrincipleInput[] {
  if (!Array.isArray(document)) throw dataInvalid({ file, line: null }, `expected a list of {title, text}, found ${describeType(document)}`);
  return document.map((entry: unknown, index) => {
    const where = `entry ${index + 1}`;
    if (!isRecord(entry)) throw dataInvalid({ file, line: null, field: `${index}` }, `${where}: expected {title, text}, found ${describeType(entry)}`);
    // Unknown keys are rejected so a typo ("txt") is reported rather than silently ignored.
    const unknown = Object.keys(entry).filter((key) => !PRINCIPLE_KEYS.has(key));
    if (unknown.length > 0) {
      throw dataInvalid({ file, line: null, field: `${index}.${unknown[0]}` }, `${where}: unknown key(s) ${unknown.join(", ")}; only title and text are allowed`);
    }
    return {
      title: requireText(entry.title, { file, where, field: `${index}.title` }),
      text: requireText(entry.text, { file, where, field: `${index}.text` }),
    };
  });
}

/**
 * Each critique/revision pair becomes one principle: the critique request (what to look for)
 * followed by the revision request (what to do about it), with the dialogue scaffolding the
 * original prompts carry ("CritiqueRequest:", a trailing "Critique:") removed. The title names the
 * file and the entry so the principle can be traced back to it.
 */
function parseCritiqueRevision(document: unknown, file: string): PrincipleInput[] {
  if (!isRecord(document)) throw dataInvalid({ file, line: null }, `expected an object of {prompt, edit_request} entries, found ${describeType(document)}`);
  const name = basename(file).replace(/\.json$/i, "");
  return Object.entries(document).map(([key, entry]) => {
    const where = `entry "${key}"`;
    if (!isRecord(entry)) throw dataInvalid({ file, line: null, field: key }, `${where}: expected {prompt, edit_request}, found ${describeType(entry)}`);
    const prompts = entry.prompt;
    if (!Array.isArray(prompts) || prompts.length === 0) {
      throw dataInvalid({ file, line: null, field: `${key}.prompt` }, `${where}: prompt must be a non-empty list of critique requests, found ${describeType(prompts)}`);
    }
    const critiques = prompts.map((prompt: unknown, i) =>
      stripScaffold(requireText(prompt, { file, where, field: `${key}.prompt.${i}` }), "CritiqueRequest", "Critique"),
    );
    const revision = stripScaffold(requireText(entry.edit_request, { file, where, field: `${key}.edit_request` }), "RevisionRequest", "Revision");
    const parts = [...critiques, revision];
    if (parts.some((part) => part === "")) {
      throw dataInvalid({ file, line: null, field: key }, `${where}: a critique or revision request is empty once its labels are removed`);
    }
    return { title: `${name} ${key}`, text: parts.join(" ") };
  });
}

/** Each instruction becomes one principle, without the trailing "Options:" cue for the choices. */
function parseRlMadison(document: unknown, file: string): PrincipleInput[] {
  if (!Array.isArray(document)) throw dataInvalid({ file, line: null }, `expected a list of instruction strings, found ${describeType(document)}`);
  const name = basename(file).replace(/\.json$/i, "");
  return document.map((entry: unknown, index) => {
    const where = `entry ${index + 1}`;
    const text = requireText(entry, { file, where, field: `${index}` })
      .replace(/\s*Options:\s*$/, "")
      .trim();
    if (text === "") throw dataInvalid({ file, line: null, field: `${index}` }, `${where}: nothing left once the "Options:" cue is removed`);
    return { title: `${name} ${index + 1}`, text };
  });
}

/** Removes a leading `Label:` and a trailing `Cue:` (the original prompts end where the model writes). */
function stripScaffold(text: string, label: string, cue: string): string {
  return text
    .replace(new RegExp(`^\\s*${label}:\\s*`), "")
    .replace(new RegExp(`\\s*${cue}:\\s*$`), "")
    .trim();
}

function requireText(value: unknown, at: { file: string; where: string; field: string }): string {
  if (typeof value !== "string" || value.trim() === "") {
    const name = at.field.split(".").slice(1).join(".") || "value";
    throw dataInvalid({ file: at.file, line: null, field: at.field }, `${at.where}: ${name} must be a non-empty string, found ${describeType(value)}`);
  }
  return value.trim();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeType(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return value.trim() === "" ? "an empty string" : "a string";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
