import { spawn } from "node:child_process";
import { StringDecoder } from "node:string_decoder";
import { IterAlignError } from "../spec/errors.js";

/** One run of a training command. */
export interface ProcessSpec {
  /** Executable and its arguments, handed to the OS as they are (no shell is involved unless `file` is one). */
  readonly file: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly signal: AbortSignal;
  readonly timeoutMs?: number;
  /** Between SIGTERM and SIGKILL when stopping the command. */
  readonly killGraceMs: number;
  /** Every line the command writes, stdout and stderr alike (`\n`, `\r\n` and `\r` end a line). */
  readonly onLine: (line: string, stream: "stdout" | "stderr") => void;
  /** How the command is named in errors. */
  readonly label: string;
  /** Called with the process id (its process group's id) once the command started. */
  readonly onStart?: (pid: number) => void;
}

/** How a run ended by itself. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * Runs a command to its end, streaming its output by line. The command gets its own process group, so
 * stopping it (abort, timeout) reaches everything it started (a launcher's Python workers, say): SIGTERM to
 * the group, SIGKILL after the grace period. Rejects with ABORTED or TIMEOUT once the process is gone, or with
 * TRAINING_FAILED when it cannot be started; resolves with the exit status otherwise.
 */
export function runProcess(spec: ProcessSpec): Promise<ProcessExit> {
  return new Promise((resolve, reject) => {
    if (spec.signal.aborted) {
      reject(new IterAlignError("ABORTED", `${spec.label} was not started: aborted`));
      return;
    }
    const groupKill = process.platform !== "win32";
    const child = spawn(spec.file, [...spec.args], {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: groupKill,
    });
    if (child.pid !== undefined) spec.onStart?.(child.pid);
    let stopping: IterAlignError | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const signalAll = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        if (groupKill) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch {
        // ESRCH: everything in the group has already exited.
        return;
      }
    };
    const stop = (reason: IterAlignError): void => {
      if (stopping || settled) return;
      stopping = reason;
      signalAll("SIGTERM");
      killTimer = setTimeout(() => signalAll("SIGKILL"), spec.killGraceMs);
    };
    const onAbort = (): void => stop(new IterAlignError("ABORTED", `${spec.label} was stopped: aborted`, { cause: spec.signal.reason }));
    spec.signal.addEventListener("abort", onAbort, { once: true });
    const timeout =
      spec.timeoutMs === undefined
        ? undefined
        : setTimeout(
            () =>
              stop(
                new IterAlignError("TIMEOUT", `${spec.label} ran longer than timeoutMs ${String(spec.timeoutMs)} and was stopped`, {
                  details: { timeoutMs: spec.timeoutMs },
                }),
              ),
            spec.timeoutMs,
          );

    const finish = (): void => {
      settled = true;
      spec.signal.removeEventListener("abort", onAbort);
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
    };

    pipeLines(child.stdout, (line) => spec.onLine(line, "stdout"));
    pipeLines(child.stderr, (line) => spec.onLine(line, "stderr"));

    child.once("error", (err) => {
      finish();
      reject(
        new IterAlignError("TRAINING_FAILED", `cannot start ${spec.label}: ${err.message}`, {
          cause: err,
          details: { file: spec.file, cwd: spec.cwd },
        }),
      );
    });
    // `close` comes after the streams ended, so every line has been handed over.
    child.once("close", (code, signal) => {
      if (settled) return;
      if (stopping) {
        // The group leader is gone; whatever it left behind in the group goes too.
        signalAll("SIGKILL");
        finish();
        reject(stopping);
        return;
      }
      finish();
      resolve({ code, signal });
    });
  });
}

/** Calls `onLine` for each line of a stream, decoding UTF-8 across chunk boundaries. */
function pipeLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  const emit = (text: string, final: boolean): void => {
    pending += text;
    const parts = pending.split(/\r\n|\r|\n/);
    pending = final ? "" : (parts.pop() ?? "");
    for (const part of parts) if (part.length > 0) onLine(part);
  };
  stream.on("data", (chunk: Buffer) => emit(decoder.write(chunk), false));
  stream.on("end", () => emit(decoder.end(), true));
}
