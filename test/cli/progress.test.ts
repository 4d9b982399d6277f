import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { CommandIo } from "../../src/cli/io.js";
import { createProgress, etaSeconds, formatDuration, progressLine } from "../../src/cli/progress.js";
import { Reporter } from "../../src/cli/reporter.js";

function captureIo(errIsTTY = false): CommandIo & { text: () => string } {
  let err = "";
  return { out: () => undefined, err: (t) => (err += t), stdin: Readable.from([]), isTTY: false, errIsTTY, text: () => err };
}

describe("progress without a terminal", () => {
  it("formats durations, ETA and a plain line", () => {
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(3725)).toBe("1h02m");
    expect(etaSeconds(0, 10, 5)).toBeUndefined();
    expect(etaSeconds(25, 100, 10)).toBe(30);
    expect(progressLine("  judge   ", 120, 400, 60, 85.24)).toBe("  judge: 120/400 (30%), 85.2 tok/s, ETA 2m20s, 1m00s elapsed");
    expect(progressLine("judge", 400, 400, 200)).toBe("judge: 400/400 (100%), 3m20s elapsed");
  });

  it("writes a line at most every interval, and one when the task completes", () => {
    let t = 0;
    const lines: string[] = [];
    const p = createProgress("red-team", 10, { tty: false, write: (l) => lines.push(l), intervalMs: 1000, now: () => t });
    for (let done = 1; done <= 10; done++) {
      t += 300;
      p.update(done, 50);
    }
    p.stop();
    // 300 ms per item: lines at 1200 ms (4 done), 2400 ms (8 done) and the completion (10 done).
    expect(lines.map((l) => l.split(",")[0])).toEqual(["red-team: 4/10 (40%)", "red-team: 8/10 (80%)", "red-team: 10/10 (100%)"]);
    expect(lines.every((l) => l.endsWith("\n"))).toBe(true);
  });
});

describe("Reporter", () => {
  it("quiet shows only warnings; normal adds info; verbose adds details", () => {
    for (const [options, expected] of [
      [{ quiet: true }, "w\n"],
      [{}, "i\nw\n"],
      [{ verbose: true }, "i\nd\nw\n"],
    ] as const) {
      const io = captureIo();
      const r = new Reporter(io, options);
      r.info("i");
      r.detail("d");
      r.warn("w");
      expect(io.text()).toBe(expected);
    }
  });

  it("a quiet run still logs everything, progress included, with time stamps, to the log file", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-log-"));
    const log = path.join(dir, "sub", "run.log");
    const io = captureIo();
    const r = new Reporter(io, { quiet: true, logFile: log, progressIntervalMs: 0 });
    r.info("iteration 0: 4 prompts");
    r.detail("judge: started");
    const p = r.progress("judge", 2);
    p.update(1);
    p.update(2);
    p.stop();
    expect(io.text()).toBe("");
    const lines = readFileSync(log, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /);
    expect(lines.map((l) => l.slice(25))).toEqual(["iteration 0: 4 prompts", "judge: started", expect.stringMatching(/^judge: 1\/2 \(50%\)/), expect.stringMatching(/^judge: 2\/2 \(100%\)/)]);
  });
});
