import { IterAlignError } from "../spec/errors.js";

/** Where in a data file a problem was found. `line` is null for JSON documents (no line tracking). */
export interface DataLocation {
  file: string;
  line: number | null;
  /** 0-based record index, used in the message when there is no line. */
  index?: number;
  /** The mapped field (dot path) the problem is about, if any. */
  field?: string | null;
}

/**
 * Formats a location the way compilers do (`file:line`), so editors and terminals can jump to it.
 * JSON documents have no line numbers, so the 1-based record number stands in for them.
 */
export function formatLocation(location: DataLocation): string {
  if (location.line !== null) return `${location.file}:${location.line}`;
  if (location.index !== undefined) return `${location.file}: record ${location.index + 1}`;
  return location.file;
}

/**
 * A `DATA_INVALID` error whose message starts with the location and whose details always carry
 * `{file, line, field}`, so callers (CLI, reports) can point at the offending record without parsing text.
 */
export function dataInvalid(location: DataLocation, problem: string, cause?: unknown): IterAlignError {
  return new IterAlignError("DATA_INVALID", `${formatLocation(location)}: ${problem}`, {
    cause,
    details: {
      file: location.file,
      line: location.line,
      field: location.field ?? null,
      ...(location.index === undefined ? {} : { index: location.index }),
    },
  });
}
