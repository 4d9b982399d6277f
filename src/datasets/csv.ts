import { dataInvalid } from "./data-error.js";

/** One CSV row: its fields and the 1-based line on which it starts (rows may span lines). */
export interface CsvRow {
  fields: string[];
  line: number;
}

/** Options for {@link parseCsv}. */
export interface ParseCsvOptions {
  /** File name used in error messages. */
  file?: string;
}

type FieldState = "start" | "unquoted" | "quoted" | "afterQuote";

/**
 * Parses RFC 4180 CSV text into rows.
 *
 * - Fields are separated by `,`; rows end with CRLF or LF (a lone CR is kept as data, as RFC 4180
 *   only knows CRLF and old-Mac line endings are not worth guessing at).
 * - A field that starts with `"` is quoted: it may hold commas, CR/LF and `""` (a literal quote).
 *   Anything other than a separator or line end after the closing quote is an error, since it means
 *   the writer did not escape a quote and the rest of the row would be misread.
 * - A `"` in the middle of an unquoted field is kept literally (as Python's csv module does), because
 *   hand-written files often contain `5" screen` and rejecting them helps nobody.
 * - A UTF-8 byte-order mark at the very start is dropped (Excel writes one).
 * - Completely empty lines are skipped, so a trailing newline or blank separator line never becomes a
 *   spurious one-field row.
 *
 * An unterminated quoted field throws `DATA_INVALID` naming the line where the quote opened, which is
 * where the user has to look; the parser would otherwise swallow the rest of the file silently.
 */
export function parseCsv(text: string, options: ParseCsvOptions = {}): CsvRow[] {
  const file = options.file ?? "<csv>";
  const rows: CsvRow[] = [];
  let fields: string[] = [];
  let field = "";
  let state: FieldState = "start";
  let line = 1;
  let rowLine = 1;
  let quoteLine = 1;

  const endRow = (): void => {
    const blank = fields.length === 0 && field === "" && state === "start";
    if (!blank) rows.push({ fields: [...fields, field], line: rowLine });
    fields = [];
    field = "";
    state = "start";
  };

  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (state === "quoted") {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          state = "afterQuote";
        }
      } else {
        if (c === "\n") line++;
        field += c;
      }
      continue;
    }
    if (c === ",") {
      fields.push(field);
      field = "";
      state = "start";
    } else if (c === "\n" || (c === "\r" && text[i + 1] === "\n")) {
      if (c === "\r") i++;
      endRow();
      line++;
      rowLine = line;
    } else if (state === "afterQuote") {
      throw dataInvalid({ file, line, field: null }, `unexpected character ${JSON.stringify(c)} after a closing quote (escape quotes inside a quoted field as "")`);
    } else if (c === '"' && state === "start") {
      state = "quoted";
      quoteLine = line;
    } else {
      field += c;
      state = "unquoted";
    }
  }

  if (state === "quoted") {
    throw dataInvalid({ file, line: quoteLine, field: null }, "unterminated quoted field (a \" opened here is never closed)");
  }
  endRow();
  return rows;
}

/** One CSV data row as an object keyed by the header's column names. */
export interface CsvRecord {
  record: Record<string, string>;
  line: number;
}

/**
 * Parses CSV with a header row into objects. Every row must have exactly as many fields as the header:
 * a short or long row almost always means a quoting mistake, and guessing which column moved would
 * silently feed the wrong text to a model.
 */
export function parseCsvRecords(text: string, options: ParseCsvOptions = {}): CsvRecord[] {
  const file = options.file ?? "<csv>";
  const [header, ...rows] = parseCsv(text, options);
  if (header === undefined) throw dataInvalid({ file, line: null, field: null }, "the CSV file is empty (no header row)");
  const seen = new Set<string>();
  for (const name of header.fields) {
    if (seen.has(name)) throw dataInvalid({ file, line: header.line, field: name }, `duplicate column name '${name}' in the header`);
    seen.add(name);
  }
  return rows.map((row) => {
    if (row.fields.length !== header.fields.length) {
      throw dataInvalid(
        { file, line: row.line, field: null },
        `expected ${header.fields.length} fields (as in the header), found ${row.fields.length}`,
      );
    }
    // Object.fromEntries defines own properties, so a column named "__proto__" cannot touch the prototype.
    const record = Object.fromEntries(header.fields.map((name, i) => [name, row.fields[i] ?? ""]));
    return { record, line: row.line };
  });
}
