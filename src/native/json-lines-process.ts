/**
 * The process side of iteralign's native servers (`native/iteralign-scorer`, `native/iteralign-generate`): spawning,
 * the JSON-lines protocol (a ready line, then one response per request), the stderr tail kept for error messages,
 * and the exit hook that keeps the processes from outliving Node.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import type { Socket } from "node:net";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";

const STDERR_LINES = 20;

/** The startup line every native program writes once its model is loaded: the vocabulary and the context it made. */
export const NativeReadyLine = z.object({
  ready: z.literal(true),
  nVocab: z.number().int(),
  nCtx: z.number().int(),
  nSeq: z.number().int(),
  nBatch: z.number().int(),
});

/** Live native processes, killed when this process exits so none outlives it. */
const live = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers run synchronously; kill() only sends a signal, which is all that can be done there. When
  // Node dies without running them (SIGKILL, an unhandled signal), the program sees EOF on stdin and exits.
  process.once("exit", () => {
    for (const child of live) child.kill("SIGKILL");
  });
}

/** Process ids of the native programs running for this process (the thread governor counts their CPU as its own). */
export function liveNativePids(): number[] {
  return [...live].map((child) => child.pid).filter((pid): pid is number => pid !== undefined);
}

/** What the messages call the program: `native scorer`, `native generator`. */
export interface ProcessLabel {
  readonly program: string;
  readonly modelFile: string;
}

interface Pending {
  readonly id: number;
  /** What the program is doing for this request, for the message if it dies: `scoring`, `generating`. */
  readonly doing: string;
  readonly resolve: (r: Record<string, unknown>) => void;
  readonly reject: (e: Error) => void;
}

/** Starts a native program; the process is killed when this Node process exits. */
export function spawnJsonLinesProcess<Ready>(
  binary: string,
  args: readonly string[],
  label: ProcessLabel,
  readyLine: z.ZodType<Ready>,
): JsonLinesProcess<Ready> {
  installExitHook();
  const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  return new JsonLinesProcess(child, label, readyLine);
}

/** One running native program: its line protocol, its stderr tail and its one request in flight. */
export class JsonLinesProcess<Ready> {
  readonly stderrTail: string[] = [];
  readonly ready: Promise<Ready>;
  readonly exited: Promise<void>;
  private isDead = false;
  private exitText = "still running";
  private pending: Pending | undefined;
  private stdoutBuffer = "";
  private settleReady: ((r: Ready) => void) | undefined;
  private failReady: ((e: Error) => void) | undefined;

  constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly label: ProcessLabel,
    private readonly readyLine: z.ZodType<Ready>,
  ) {
    this.ready = new Promise<Ready>((resolve, reject) => {
      this.settleReady = resolve;
      this.failReady = reject;
    });
    // The caller attaches its handlers later (after a timeout race); keep an early failure from being unhandled.
    this.ready.catch(() => undefined);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => this.onStdout(chunk));
    child.stderr.on("data", (chunk: string) => this.remember(chunk));
    // A write to a process that just died fails with EPIPE; the exit handler below reports it.
    child.stdin.on("error", () => undefined);
    this.exited = new Promise((resolve) => {
      child.on("error", (err) => {
        this.remember(`cannot run the ${label.program}: ${err.message}`);
        this.onExit(null, null);
        resolve();
      });
      // 'close', not 'exit': it comes after stdout is drained, so an answer written just before exiting counts.
      child.on("close", (code, signal) => {
        this.onExit(code, signal);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the process has exited (or never started). */
  get dead(): boolean {
    return this.isDead;
  }

  /**
   * Sends one request (`id` is added to `body`); only one may be in flight (the caller's queue guarantees it).
   * Resolves with the response object; an `error` response rejects with USAGE (`kind: input`) or GENERATION_FAILED.
   */
  request(id: number, body: Record<string, unknown>, doing: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.dead) {
        reject(this.deathError("before the request was sent"));
        return;
      }
      this.pending = { id, doing, resolve, reject };
      this.setRef(true);
      this.child.stdin.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  /** Closes stdin (the program exits on EOF); kills it if it has not exited within `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.dead) return;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the process at once (tests use it to simulate a crash). */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }

  deathError(when: string): IterAlignError {
    const tail = this.stderrTail.length > 0 ? `; last stderr lines:\n${this.stderrTail.join("\n")}` : "";
    return new IterAlignError(
      "GENERATION_FAILED",
      `the ${this.label.program} for ${this.label.modelFile} exited ${when} (${this.exitText})${tail}`,
      { retryable: true, details: { modelFile: this.label.modelFile } },
    );
  }

  /** An error about a response: `<program> (<model file>): <message>`. */
  responseError(message: string, code: "USAGE" | "GENERATION_FAILED" = "GENERATION_FAILED", kind?: string): IterAlignError {
    return new IterAlignError(code, `${this.label.program} (${this.label.modelFile}): ${message}`, kind ? { details: { kind } } : {});
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.isDead) return;
    this.isDead = true;
    live.delete(this.child);
    this.exitText = signal ? `signal ${signal}` : code === null ? "failed to start" : `status ${code}`;
    this.failReady?.(this.deathError("while loading the model"));
    const pending = this.pending;
    this.pending = undefined;
    if (pending) pending.reject(this.deathError(`while ${pending.doing}`));
  }

  private remember(text: string): void {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
    }
  }

  private onStdout(chunk: string): void {
    this.stdoutBuffer += chunk;
    for (let nl = this.stdoutBuffer.indexOf("\n"); nl >= 0; nl = this.stdoutBuffer.indexOf("\n")) {
      const line = this.stdoutBuffer.slice(0, nl).trim();
      this.stdoutBuffer = this.stdoutBuffer.slice(nl + 1);
      if (line !== "") this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // Not protocol: something in llama.cpp printed to stdout. Keep it for diagnostics, do not fail.
      this.remember(`stdout: ${line}`);
      return;
    }
    const ready = this.readyLine.safeParse(value);
    if (ready.success) {
      this.settleReady?.(ready.data);
      this.setRef(false);
      return;
    }
    const pending = this.pending;
    const response = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    const id = response?.["id"];
    // One request in flight: a response with a null id (a request the program could not parse) is that one's.
    if (!response || !pending || (id !== null && id !== pending.id)) {
      this.remember(`unexpected ${this.label.program} output: ${line.slice(0, 200)}`);
      return;
    }
    this.pending = undefined;
    this.setRef(false);
    if (typeof response["error"] === "string") {
      const kind = typeof response["kind"] === "string" ? response["kind"] : undefined;
      pending.reject(this.responseError(response["error"], kind === "input" ? "USAGE" : "GENERATION_FAILED", kind));
    } else {
      pending.resolve(response);
    }
  }

  /**
   * Holds the event loop only while the program works for us, so an idle one never keeps Node alive; the exit hook
   * kills it when the program ends without close().
   */
  private setRef(busy: boolean): void {
    const handles = [this.child.stdout, this.child.stderr, this.child.stdin] as unknown as Socket[];
    if (busy) {
      this.child.ref();
      for (const h of handles) h.ref();
    } else {
      this.child.unref();
      for (const h of handles) h.unref();
    }
  }
}

/**
 * Starts a native program and waits for its ready line; a program that exits or does not load within `timeoutMs`
 * fails with MODEL_LOAD_FAILED and the tail of its stderr.
 */
export async function startJsonLinesProcess<Ready>(
  binary: string,
  args: readonly string[],
  label: ProcessLabel,
  readyLine: z.ZodType<Ready>,
  timeoutMs: number,
): Promise<{ proc: JsonLinesProcess<Ready>; info: Ready }> {
  const proc = spawnJsonLinesProcess(binary, args, label, readyLine);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
  });
  try {
    const info = await Promise.race([proc.ready, timeout]);
    return { proc, info };
  } catch (err) {
    await proc.stop(0);
    const tail = proc.stderrTail.length > 0 ? `; last stderr lines:\n${proc.stderrTail.join("\n")}` : "";
    const why = err instanceof Error && err.message === "timeout" ? `did not load within ${timeoutMs} ms` : "exited while loading";
    throw new IterAlignError("MODEL_LOAD_FAILED", `the ${label.program} for ${label.modelFile} ${why}${tail}`, {
      cause: err,
      details: { modelFile: label.modelFile, binary },
    });
  } finally {
    clearTimeout(timer);
  }
}
