import cliProgress from "cli-progress";

/** Progress of one countable task (a stage's items, a benchmark's items, a build's percent). */
export interface Progress {
  update(done: number, tokensPerSecond?: number, label?: string): void;
  stop(): void;
}

export interface ProgressOptions {
  /** Draw a bar (a terminal) or write plain lines (a pipe, a CI log). Default: whether `stream` is a terminal. */
  readonly tty?: boolean;
  /** Where plain lines go. Default: `stream`. */
  readonly write?: (text: string) => void;
  /** Plain lines: at most one per this many milliseconds (default 10000). */
  readonly intervalMs?: number;
  /** Milliseconds clock (tests). */
  readonly now?: () => number;
  readonly stream?: NodeJS.WriteStream;
}

const SILENT: Progress = { update: () => undefined, stop: () => undefined };

/** `1h02m`, `3m05s`, `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Remaining time at the average rate so far; undefined before anything is done. */
export function etaSeconds(done: number, total: number, elapsedSeconds: number): number | undefined {
  if (done <= 0 || elapsedSeconds <= 0) return undefined;
  return ((total - done) * elapsedSeconds) / done;
}

/** One plain progress line: `judge: 120/400 (30%), 85.2 tok/s, ETA 1m20s`. */
export function progressLine(title: string, done: number, total: number, elapsedSeconds: number, tokensPerSecond?: number): string {
  const percent = total > 0 ? Math.floor((100 * done) / total) : 0;
  const eta = etaSeconds(done, total, elapsedSeconds);
  return `${title.trimEnd()}: ${done}/${total} (${percent}%)${tokensPerSecond !== undefined && tokensPerSecond > 0 ? `, ${tokensPerSecond.toFixed(1)} tok/s` : ""}${
    eta !== undefined && done < total ? `, ETA ${formatDuration(eta)}` : ""
  }, ${formatDuration(elapsedSeconds)} elapsed`;
}

/**
 * Progress on stderr (stdout stays clean for results): on a terminal a bar with ETA and tokens/s; elsewhere
 * (a pipe, a CI log) a plain line at most every `intervalMs`, and one when the task completes.
 */
export function createProgress(title: string, total: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? Boolean(stream.isTTY);
  if (total <= 0) return SILENT;
  if (!tty) return lineProgress(title, total, options.write ?? ((t) => stream.write(t)), options.intervalMs ?? 10_000, options.now ?? (() => performance.now()));
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${title} [{bar}] {value}/{total} | ETA {eta_formatted} | {tps} tok/s | {label}`,
      barCompleteChar: "=",
      barIncompleteChar: " ",
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.legacy,
  );
  bar.start(total, 0, { tps: "-", label: "" });
  return {
    update: (done, tps, label) => bar.update(done, { tps: tps === undefined ? "-" : tps.toFixed(1), label: label ?? "" }),
    stop: () => bar.stop(),
  };
}

function lineProgress(title: string, total: number, write: (text: string) => void, intervalMs: number, now: () => number): Progress {
  const started = now();
  let last = started;
  let lastDone = -1;
  let finished = false;
  return {
    update(done, tps) {
      if (finished || done === lastDone) return;
      const t = now();
      const complete = done >= total;
      if (!complete && t - last < intervalMs) return;
      lastDone = done;
      last = t;
      finished = complete;
      write(`${progressLine(title, done, total, (t - started) / 1000, tps)}\n`);
    },
    stop: () => {
      finished = true;
    },
  };
}
