import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RunLayout } from "../../src/pipeline/run-layout.js";

const dir = mkdtempSync(path.join(tmpdir(), "iteralign-layout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("run layout", () => {
  it("writes atomically and removes the temporary file a killed process left for the same target", () => {
    const layout = new RunLayout(path.join(dir, "run"));
    const iterationDir = layout.iterationDir(0);
    mkdirSync(iterationDir, { recursive: true });
    // A process killed between writing and renaming leaves its temporary file behind.
    writeFileSync(path.join(iterationDir, "attempts.jsonl.tmp-27745"), "half");
    // Another file's temporary file, and a file whose name only looks like one, are not ours to remove.
    writeFileSync(path.join(iterationDir, "verdicts.jsonl.tmp-27745"), "other");
    writeFileSync(path.join(iterationDir, "attempts.jsonl.tmp-notes"), "user file");
    layout.writeIteration(0, "attempts.jsonl", "whole\n");
    expect(readFileSync(path.join(iterationDir, "attempts.jsonl"), "utf8")).toBe("whole\n");
    expect(readdirSync(iterationDir).sort()).toEqual(["attempts.jsonl", "attempts.jsonl.tmp-notes", "verdicts.jsonl.tmp-27745"]);
    layout.writeIteration(0, "verdicts.jsonl", "v\n");
    expect(existsSync(path.join(iterationDir, "verdicts.jsonl.tmp-27745"))).toBe(false);
  });
});
