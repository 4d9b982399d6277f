import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { gunzip } from "node:zlib";
import { promisify } from "node:util";
import { IterAlignError } from "../spec/errors.js";
import { parseCsvRecords } from "./csv.js";
import { dataInvalid } from "./data-error.js";

const gunzipAsync = promisify(gunzip);

/** The record formats iteralign reads, for schemas and messages. Each may also be gzip-compressed. */
export const RECORD_FORMATS = ["jsonl", "json", "csv"] as const;

/** A file format iteralign reads. */
export type RecordFormat = (typeof RECORD_FORMATS)[number];

/** One record read from a data file, with where it was found. */
export interface SourceRecord {
  /** The parsed value: a JSON value, or for CSV an object keyed by column name. */
  record: unknown;
  /** 1-based line where the record starts (JSONL, CSV); null for JSON documents. */
  line: number | null;
  /** 0-based position among all records of the file. */
  index: number;
  /**
   * For a JSON object of groups (e.g. `{topic: {subtopic: [question, ...]}}`): the keys leading to this
   * record (`[topic, subtopic]`). Empty for arrays, JSONL and CSV.
   */
  groupKeys: readonly string[];
}

/**
 * How a JSON object (the document, or the value at `path`) turns into records:
 * - `"groups"` (default): keys are group names; arrays below them hold the records, objects nest
 *   further groups (HarmfulQA, CatQA).
 * - `"records"`: every property value is one record, its key the only group key (`{id: {...}, ...}`).
 */
export type JsonObjectMode = "groups" | "records";

/** Options for {@link parseRecords}. */
export interface ParseRecordsOptions {
  format: RecordFormat;
  /** File name for messages and `source.file`. */
  file: string;
  /** JSON only: dot path to the array or object that holds the records, e.g. `data.examples`. */
  path?: string;
  /** JSON only: how an object is read; see {@link JsonObjectMode}. */
  objects?: JsonObjectMode;
}

/** Options for {@link readRecords}. */
export interface ReadRecordsOptions {
  /** Overrides the format inferred from the file extension. */
  format?: RecordFormat;
  /** Name used in messages and `source.file`; defaults to the path as given. */
  displayName?: string;
  /** JSON only: dot path to the records; see {@link ParseRecordsOptions.path}. */
  path?: string;
  /** JSON only: see {@link JsonObjectMode}. */
  objects?: JsonObjectMode;
}

/**
 * Infers the format from a file name, looking through a trailing `.gz` (`x.jsonl.gz` is JSONL).
 * Returns null for an unknown extension so the caller can ask for an explicit `format`.
 */
export function formatFromFileName(file: string): RecordFormat | null {
  const lower = file.toLowerCase().replace(/\.gz$/, "");
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
  if (lower.endsWith(".json")) return "json";
  if (lower.endsWith(".csv")) return "csv";
  return null;
}

/**
 * Parses the text of a data file into records, in file order. Synchronous and I/O-free so tests and
 * callers holding text in memory (e.g. an upload) use the same code path as files on disk.
 */
export function* parseRecords(text: string, options: ParseRecordsOptions): Generator<SourceRecord> {
  const { file } = options;
  if (options.path !== undefined && options.format !== "json") {
    throw new IterAlignError("USAGE", `${file}: 'path' only applies to JSON files, not ${options.format}`, { details: { file, line: null, field: null } });
  }
  switch (options.format) {
    case "csv": {
      let index = 0;
      for (const { record, line } of parseCsvRecords(text, { file })) yield { record, line, index: index++, groupKeys: [] };
      return;
    }
    case "jsonl":
      yield* parseJsonLines(text, file);
      return;
    case "json":
      yield* parseJsonDocument(text, options);
      return;
  }
}

function* parseJsonLines(text: string, file: string): Generator<SourceRecord> {
  const lines = stripBom(text).split("\n");
  let index = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? "";
    // Blank lines (often a trailing newline or a CRLF remnant) carry no record.
    if (raw.trim() === "") continue;
    let record: unknown;
    try {
      record = JSON.parse(raw);
    } catch (error) {
      throw dataInvalid({ file, line: i + 1, field: null }, `invalid JSON: ${errorMessage(error)}`, error);
    }
    yield { record, line: i + 1, index: index++, groupKeys: [] };
  }
}

function* parseJsonDocument(text: string, options: ParseRecordsOptions): Generator<SourceRecord> {
  const { file } = options;
  const body = stripBom(text);
  let document: unknown;
  try {
    document = JSON.parse(body);
  } catch (error) {
    throw dataInvalid({ file, line: jsonErrorLine(body, error), field: null }, `invalid JSON: ${errorMessage(error)}`, error);
  }
  const at = options.path ?? "";
  const target = at === "" ? document : resolveJsonPath(document, at, file);
  const where = at === "" ? "the top level" : `'${at}'`;
  const counter = { next: 0 };
  if (Array.isArray(target)) {
    for (const record of target) yield { record, line: null, index: counter.next++, groupKeys: [] };
  } else if (isPlainObject(target)) {
    if (options.objects === "records") {
      for (const [key, record] of Object.entries(target)) yield { record, line: null, index: counter.next++, groupKeys: [key] };
    } else {
      yield* walkGroups(target, [], counter, file);
    }
  } else {
    throw dataInvalid({ file, line: null, field: options.path ?? null }, `expected an array or object of records at ${where}, found ${describeType(target)}`);
  }
}

function* walkGroups(node: Record<string, unknown>, keys: string[], counter: { next: number }, file: string): Generator<SourceRecord> {
  for (const [key, value] of Object.entries(node)) {
    const groupKeys = [...keys, key];
    if (Array.isArray(value)) {
      for (const record of value) yield { record, line: null, index: counter.next++, groupKeys };
    } else if (isPlainObject(value)) {
      yield* walkGroups(value, groupKeys, counter, file);
    } else {
      // A scalar among groups means the object is not a grouping; say how to read it instead.
      const field = groupKeys.join(".");
      throw dataInvalid(
        { file, line: null, field },
        `expected an array or object under '${field}', found ${describeType(value)} (use objects: "records" if each property is one record)`,
      );
    }
  }
}

/** Follows a dot path through objects (and arrays, by numeric segment) of a parsed JSON document. */
function resolveJsonPath(document: unknown, path: string, file: string): unknown {
  let node: unknown = document;
  for (const segment of path.split(".")) {
    if (Array.isArray(node) && /^\d+$/.test(segment)) node = node[Number(segment)];
    else if (isPlainObject(node) && Object.hasOwn(node, segment)) node = node[segment];
    else node = undefined;
    if (node === undefined) throw dataInvalid({ file, line: null, field: path }, `path '${path}' not found in the JSON document (no '${segment}')`);
  }
  return node;
}

/**
 * Reads a data file (optionally gzipped) and parses all its records. Gzip is recognised by its magic
 * bytes rather than the extension alone, so a mis-named file still works; a `.gz` name on a file that
 * is not gzip is reported, since it usually means a truncated or wrong download.
 */
export async function readRecords(file: string | URL, options: ReadRecordsOptions = {}): Promise<SourceRecord[]> {
  const filePath = file instanceof URL ? fileURLToPath(file) : file;
  const displayName = options.displayName ?? filePath;
  const format = options.format ?? formatFromFileName(filePath);
  if (format === null) {
    throw new IterAlignError("USAGE", `${displayName}: cannot tell the format from the file name; set format to one of ${RECORD_FORMATS.join(", ")}`, {
      details: { file: displayName, line: null, field: null },
    });
  }
  const text = await readDataText(filePath, displayName);
  return [...parseRecords(text, { format, file: displayName, path: options.path, objects: options.objects })];
}

/** Reads a file as strict UTF-8 text, gunzipping it first when it is gzip-compressed. */
export async function readDataText(filePath: string, displayName: string = filePath): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(filePath);
  } catch (error) {
    throw new IterAlignError("USAGE", `cannot read data file ${displayName}: ${errorMessage(error)}`, {
      cause: error,
      details: { file: displayName, line: null, field: null },
    });
  }
  const gzipped = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  if (gzipped) {
    try {
      bytes = await gunzipAsync(bytes);
    } catch (error) {
      throw dataInvalid({ file: displayName, line: null }, `corrupt gzip data: ${errorMessage(error)}`, error);
    }
  } else if (filePath.toLowerCase().endsWith(".gz")) {
    throw dataInvalid({ file: displayName, line: null }, "the name ends in .gz but the content is not gzip-compressed");
  }
  try {
    // fatal: a wrong encoding (e.g. Latin-1) must fail loudly instead of turning prompts into mojibake.
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw dataInvalid({ file: displayName, line: null }, "the file is not valid UTF-8", error);
  }
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Recovers a line number from V8's JSON.parse message ("line N column M" or "position N"), if any. */
function jsonErrorLine(text: string, error: unknown): number | null {
  const message = errorMessage(error);
  const lineMatch = /line (\d+) column/.exec(message);
  if (lineMatch?.[1] !== undefined) return Number(lineMatch[1]);
  const positionMatch = /position (\d+)/.exec(message);
  if (positionMatch?.[1] === undefined) return null;
  const position = Number(positionMatch[1]);
  let line = 1;
  for (let i = 0; i < position && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** True for `{...}` values from JSON.parse (not arrays, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A short type name for messages: "null", "array", "string", ... */
export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
