import { describe, expect, it } from "vitest";
import { parseCsv, parseCsvRecords } from "../../src/datasets/csv.js";
import { IterAlignError } from "../../src/spec/errors.js";

function caught(fn: () => unknown): IterAlignError {
  try {
    fn();
  } catch (error) {
    if (error instanceof IterAlignError) return error;
    throw error;
  }
  throw new Error("expected an IterAlignError");
}

describe("parseCsv", () => {
  it("reads plain rows with LF endings and records the line of each row", () => {
    expect(parseCsv("a,b\n1,2\n3,4\n")).toEqual([
      { fields: ["a", "b"], line: 1 },
      { fields: ["1", "2"], line: 2 },
      { fields: ["3", "4"], line: 3 },
    ]);
  });

  it("treats CRLF like LF and keeps the last row without a trailing newline", () => {
    expect(parseCsv("a,b\r\n1,2\r\n3,4")).toEqual([
      { fields: ["a", "b"], line: 1 },
      { fields: ["1", "2"], line: 2 },
      { fields: ["3", "4"], line: 3 },
    ]);
  });

  it("keeps embedded newlines (LF and CRLF) in quoted fields and numbers the next row by physical line", () => {
    const rows = parseCsv('id,text\r\n1,"first line\r\nsecond line\nthird"\r\n2,after\r\n');
    expect(rows).toEqual([
      { fields: ["id", "text"], line: 1 },
      { fields: ["1", "first line\r\nsecond line\nthird"], line: 2 },
      { fields: ["2", "after"], line: 5 },
    ]);
  });

  it('turns doubled quotes into one and allows commas inside quotes', () => {
    expect(parseCsv('"He said ""hi"", then left",x\n""""\n')).toEqual([
      { fields: ['He said "hi", then left', "x"], line: 1 },
      { fields: ['"'], line: 2 },
    ]);
  });

  it("drops a BOM at the very start only", () => {
    const rows = parseCsv("\uFEFFname,value\n\uFEFFx,1\n");
    expect(rows[0]?.fields).toEqual(["name", "value"]);
    expect(rows[1]?.fields).toEqual(["\uFEFFx", "1"]);
  });

  it("keeps empty fields, quoted or not, including a trailing one", () => {
    expect(parseCsv('a,,c,\n"",x,"",\n')).toEqual([
      { fields: ["a", "", "c", ""], line: 1 },
      { fields: ["", "x", "", ""], line: 2 },
    ]);
  });

  it("skips blank lines but not a line holding one quoted empty field", () => {
    expect(parseCsv('a\n\n""\r\n\r\nb\n\n')).toEqual([
      { fields: ["a"], line: 1 },
      { fields: [""], line: 3 },
      { fields: ["b"], line: 5 },
    ]);
  });

  it("keeps a quote that appears inside an unquoted field", () => {
    expect(parseCsv('5" screen,ok\n')[0]?.fields).toEqual(['5" screen', "ok"]);
  });

  it("reports an unterminated quote at the line where it opened", () => {
    const error = caught(() => parseCsv('a,b\n1,2\n3,"never closed\nmore\nlines\n', { file: "bad.csv" }));
    expect(error.code).toBe("DATA_INVALID");
    expect(error.message).toMatch(/^bad\.csv:3: unterminated quoted field/);
    expect(error.details).toMatchObject({ file: "bad.csv", line: 3 });
  });

  it("rejects text after a closing quote", () => {
    const error = caught(() => parseCsv('a\n"x"y\n', { file: "bad.csv" }));
    expect(error.message).toMatch(/^bad\.csv:2: unexpected character "y" after a closing quote/);
  });

  it("returns no rows for empty input", () => {
    expect(parseCsv("")).toEqual([]);
    expect(parseCsv("\uFEFF")).toEqual([]);
  });
});

describe("parseCsvRecords", () => {
  it("keys rows by header and keeps each record's starting line", () => {
    const records = parseCsvRecords('\uFEFFprompt,category\r\n"multi\r\nline",x\r\nsimple,\r\n');
    expect(records).toEqual([
      { record: { prompt: "multi\r\nline", category: "x" }, line: 2 },
      { record: { prompt: "simple", category: "" }, line: 4 },
    ]);
  });

  it("rejects a row whose field count differs from the header, naming the line", () => {
    const error = caught(() => parseCsvRecords("a,b\n1,2\n1,2,3\n", { file: "rows.csv" }));
    expect(error.message).toBe("rows.csv:3: expected 2 fields (as in the header), found 3");
    expect(error.details).toMatchObject({ file: "rows.csv", line: 3, field: null });
  });

  it("rejects duplicate header names and an empty file", () => {
    expect(caught(() => parseCsvRecords("a,a\n1,2\n", { file: "dup.csv" })).message).toMatch(/duplicate column name 'a'/);
    expect(caught(() => parseCsvRecords("", { file: "empty.csv" })).message).toMatch(/^empty\.csv: the CSV file is empty/);
  });

  it("does not let a __proto__ column touch the prototype", () => {
    const [first] = parseCsvRecords("__proto__,x\nevil,1\n");
    expect(first?.record).toEqual(Object.fromEntries([["__proto__", "evil"], ["x", "1"]]));
    expect(Object.getPrototypeOf(first?.record)).toBe(Object.prototype);
  });
});
