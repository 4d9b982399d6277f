import { IterAlignError } from "../spec/errors.js";

/** A running native program as the queue sees it. */
export interface NativeChild {
  readonly dead: boolean;
  readonly pid: number | undefined;
  stop(graceMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * One native program's requests, one at a time in FIFO order. If the process dies, the request in flight fails (with
 * the program's GENERATION_FAILED) and the next request starts a fresh process; a failed start is reported rather
 * than retried, so a program that cannot start does not loop. An abort rejects its caller at once; a request already
 * sent still runs to completion in the program (interrupting it would mean killing the process) and its answer is
 * dropped.
 */
export class NativeQueue<P extends NativeChild, Info> {
  private tail: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed = false;

  constructor(
    private current: { proc: P; info: Info },
    private readonly respawn: () => Promise<{ proc: P; info: Info }>,
    /** `the native scorer for <model file>`, for messages. */
    private readonly name: string,
    /** `scoring`, `generation`: the ABORTED message says `<work> aborted`. */
    private readonly work: string,
  ) {}

  /** The current process's ready line. */
  get info(): Info {
    return this.current.info;
  }

  get pid(): number | undefined {
    return this.current.proc.pid;
  }

  /** Runs `task` on the process after every request queued before it. */
  run<T>(task: (proc: P, id: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const job = this.tail.then(() => this.start(task, signal));
    this.tail = job.catch(() => undefined);
    if (!signal) return job;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(new IterAlignError("ABORTED", `${this.work} aborted`));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      job.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** Stops the process. Requests still queued fail with USAGE. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.current.proc.stop();
  }

  /** Kills the process as a crash would (for tests of the restart path). */
  kill(): void {
    this.current.proc.kill("SIGKILL");
  }

  private async start<T>(task: (proc: P, id: number) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.closed) throw new IterAlignError("USAGE", `${this.name} is closed`);
    if (signal?.aborted) throw new IterAlignError("ABORTED", `${this.work} aborted`);
    if (this.current.proc.dead) this.current = await this.respawn();
    return task(this.current.proc, this.nextId++);
  }
}
