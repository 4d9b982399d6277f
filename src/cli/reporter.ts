import { appendFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import type { CommandIo } from "./io.js";
import { createProgress, type Progress } from "./progress.js";

/** How much a command says on stderr. */
export type Verbosity = "quiet" | "normal" | "verbose";

export interface ReporterOptions {
  readonly quiet?: boolean;
  readonly verbose?: boolean;
  /** Also append every line, verbose ones included, with a time stamp, to this file. */
  readonly logFile?: string;
  /** Plain progress lines: at most one per this many milliseconds. */
  readonly progressIntervalMs?: number;
}

/**
 * What a long command tells its user, at three levels: `quiet` (warnings and errors only), `normal` (a line per
 * stage, progress), `verbose` (also stage starts, long waits, per-stage rates). A log file, when given, gets
 * every line at the verbose level with a time stamp (progress as plain lines), whatever stderr shows. Results go to
 * stdout through the command itself, never here.
 */
export class Reporter {
  readonly level: Verbosity;
  private readonly logFile: string | undefined;

  constructor(
    private readonly io: CommandIo,
    private readonly options: ReporterOptions = {},
  ) {
    this.level = options.quiet ? "quiet" : options.verbose ? "verbose" : "normal";
    this.logFile = options.logFile ? path.resolve(options.logFile) : undefined;
    if (this.logFile) mkdirSync(path.dirname(this.logFile), { recursive: true });
  }

  /** A normal line (stage results). */
  info(line: string): void {
    if (this.level !== "quiet") this.io.err(`${line}\n`);
    this.log(line);
  }

  /** A verbose-only line. */
  detail(line: string): void {
    if (this.level === "verbose") this.io.err(`${line}\n`);
    this.log(line);
  }

  /** Shown at every level. */
  warn(line: string): void {
    this.io.err(`${line}\n`);
    this.log(line);
  }

  /** Progress of a task: a bar on a terminal, plain lines elsewhere, nothing when quiet (the log file still gets lines). */
  progress(title: string, total: number): Progress {
    const shown =
      this.level === "quiet"
        ? undefined
        : createProgress(title, total, {
            tty: this.io.errIsTTY ?? false,
            write: (t) => this.io.err(t),
            ...(this.options.progressIntervalMs !== undefined ? { intervalMs: this.options.progressIntervalMs } : {}),
          });
    const logged = this.logFile
      ? createProgress(title, total, { tty: false, write: (t) => this.log(t.trimEnd()), ...(this.options.progressIntervalMs !== undefined ? { intervalMs: this.options.progressIntervalMs } : {}) })
      : undefined;
    return {
      update: (done, tps, label) => {
        shown?.update(done, tps, label);
        logged?.update(done, tps, label);
      },
      stop: () => {
        shown?.stop();
        logged?.stop();
      },
    };
  }

  private log(line: string): void {
    if (!this.logFile) return;
    const stamp = new Date().toISOString();
    appendFileSync(this.logFile, line.split("\n").map((l) => `${stamp} ${l}`).join("\n") + "\n");
  }
}
