import type { BatchJob, BatchJobLog } from "../../spec/call-log.js";
import { IterAlignError } from "../../spec/errors.js";
import { canonicalJson, sha256Hex } from "../../util/canonical-json.js";

/**
 * Batch mode: the calls a stage starts together are sent as one batch job (OpenAI's Batch API, Anthropic's Message
 * Batches, or a batch file for `vllm run-batch`) instead of one request each. Each call still gets its own answer
 * (or its own error, which becomes that item's error row), and the job is recorded in the run store before any
 * waiting, so a run killed while the job runs polls the same job when it is resumed, and never pays twice.
 */

/** One call of a batch: its content address (the `custom_id`) and the request body the API takes. */
export interface BatchCall {
  readonly customId: string;
  readonly body: Record<string, unknown>;
}

/** How one call of a batch ended: the response body the API would have sent, or the error for that call. */
export type BatchOutcome = { readonly ok: true; readonly body: unknown } | { readonly ok: false; readonly error: IterAlignError };

/** A provider's batch API. */
export interface BatchBackend {
  /** Provider id (jobs are looked up per provider). */
  readonly provider: string;
  /** Where jobs go, as recorded (an API root without credentials, or a folder). */
  readonly endpoint: string;
  /**
   * Creates the job for `calls`. Calls `save` with the job as soon as each step is done (the input uploaded, the job
   * created), so a crash at any moment leaves a record to resume from. Returns the job once submitted.
   */
  submit(calls: readonly BatchCall[], job: BatchJob, save: (job: BatchJob) => void, signal: AbortSignal): Promise<BatchJob>;
  /** For a job whose input was uploaded but whose creation was not recorded: the job, if the provider has one. */
  recover(job: BatchJob, signal: AbortSignal): Promise<string | undefined>;
  /** Waits until the job has ended; returns each call's outcome by custom id. */
  wait(job: BatchJob, signal: AbortSignal): Promise<Map<string, BatchOutcome>>;
}

export interface BatchCollectorOptions {
  /** Where jobs are recorded (the run store); without it a restart cannot find a job again. */
  readonly log?: BatchJobLog;
  /** How long calls are gathered into one job after the first arrives. Default 50 ms. */
  readonly gatherMs?: number;
  /** Told when a job is created, found again or ended (the CLI prints it). */
  readonly notify?: (message: string) => void;
  readonly now?: () => string;
}

interface Pending {
  readonly call: BatchCall;
  readonly resolve: (body: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal | undefined;
}

/** The custom id of a request body: its content address, so the same request always maps to the same job. */
export function batchCustomId(body: Record<string, unknown>): string {
  return sha256Hex(canonicalJson(body));
}

/** Gathers concurrent calls into batch jobs on a {@link BatchBackend}. */
export class BatchCollector {
  private gathering: Pending[] | undefined;

  constructor(
    private readonly backend: BatchBackend,
    private readonly options: BatchCollectorOptions = {},
  ) {}

  /** Sends `body` as part of the next batch; resolves with the call's response body. */
  request(body: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(new IterAlignError("ABORTED", "batch call aborted", { cause: signal.reason }));
    return new Promise((resolve, reject) => {
      const pending: Pending = { call: { customId: batchCustomId(body), body }, resolve, reject, signal };
      if (!this.gathering) {
        const wave: Pending[] = [];
        this.gathering = wave;
        // Not unref'd: while calls wait for their batch, this timer is what keeps the process alive.
        setTimeout(() => {
          this.gathering = undefined;
          void this.run(wave);
        }, this.options.gatherMs ?? 50);
      }
      this.gathering.push(pending);
    });
  }

  private async run(wave: readonly Pending[]): Promise<void> {
    // One job for the wave; its calls abort together only when every caller has given up.
    const controller = new AbortController();
    const live = new Set(wave.filter((p) => !p.signal?.aborted));
    for (const p of wave) {
      p.signal?.addEventListener(
        "abort",
        () => {
          live.delete(p);
          p.reject(new IterAlignError("ABORTED", "batch call aborted", { cause: p.signal?.reason }));
          if (live.size === 0) controller.abort(p.signal?.reason);
        },
        { once: true },
      );
    }
    const calls = [...new Map(wave.map((p) => [p.call.customId, p.call])).values()];
    try {
      const outcomes = await this.execute(calls, controller.signal);
      for (const p of wave) {
        const outcome = outcomes.get(p.call.customId);
        if (!outcome) p.reject(new IterAlignError("HTTP_BAD_RESPONSE", `the batch job's output has no answer for call ${p.call.customId.slice(0, 12)}`, { retryable: true }));
        else if (outcome.ok) p.resolve(outcome.body);
        else p.reject(outcome.error);
      }
    } catch (err) {
      for (const p of wave) p.reject(err);
    }
  }

  /** Finds the job that holds these calls (recorded earlier), or submits a new one; then waits for it. */
  private async execute(calls: readonly BatchCall[], signal: AbortSignal): Promise<Map<string, BatchOutcome>> {
    const { backend } = this;
    const ids = calls.map((c) => c.customId);
    const now = this.options.now ?? (() => new Date().toISOString());
    const save = (job: BatchJob): void => this.options.log?.putBatchJob({ ...job, updatedAt: now() });
    const wanted = new Set(ids);
    const known = (this.options.log?.listBatchJobs(backend.provider) ?? []).find(
      (job) => job.endpoint === backend.endpoint && ids.every((id) => job.customIds.includes(id)) && job.customIds.length >= wanted.size,
    );
    let job: BatchJob | undefined = known;
    // A job that had already ended before this process: its answers are read again (they may not have reached the
    // cache), but its failed calls are sent again in a new job, as any failed item is retried on resume.
    const endedBefore = known?.status === "ended";
    if (job && job.externalId === null) {
      const recovered = await backend.recover(job, signal);
      if (recovered !== undefined) {
        job = { ...job, externalId: recovered, status: "submitted" };
        save(job);
      }
    }
    if (job && job.externalId !== null) {
      this.options.notify?.(`batch job ${job.externalId} (${job.customIds.length} calls) found in the store; waiting for it`);
    } else {
      job = await this.submit(calls, job, save, now, signal);
    }
    const outcomes = await backend.wait(job, signal);
    save({ ...job, status: "ended" });
    if (endedBefore) {
      const retry = calls.filter((c) => outcomes.get(c.customId)?.ok !== true);
      if (retry.length > 0) {
        this.options.notify?.(`${retry.length} calls that failed in batch job ${job.externalId ?? job.id} are sent again`);
        for (const [id, outcome] of await this.submitAndWait(retry, signal, save, now)) outcomes.set(id, outcome);
      }
    }
    const failed = [...outcomes.values()].filter((o) => !o.ok).length;
    this.options.notify?.(`batch job ${job.externalId ?? job.id} ended: ${outcomes.size - failed} answered, ${failed} failed`);
    return outcomes;
  }

  /** Creates a job for `calls` (reusing a recorded job whose input was uploaded but not submitted). */
  private async submit(calls: readonly BatchCall[], partial: BatchJob | undefined, save: (job: BatchJob) => void, now: () => string, signal: AbortSignal): Promise<BatchJob> {
    const { backend } = this;
    const sorted = calls.map((c) => c.customId).sort();
    const createdAt = now();
    const fresh: BatchJob = partial ?? {
      id: sha256Hex(canonicalJson({ provider: backend.provider, endpoint: backend.endpoint, ids: sorted, createdAt })),
      provider: backend.provider,
      endpoint: backend.endpoint,
      externalId: null,
      inputRef: null,
      customIds: sorted,
      status: "uploaded",
      createdAt,
      updatedAt: createdAt,
    };
    const job = await backend.submit(calls, fresh, save, signal);
    this.options.notify?.(`batch job ${job.externalId ?? job.id} submitted with ${calls.length} calls`);
    return job;
  }

  private async submitAndWait(calls: readonly BatchCall[], signal: AbortSignal, save: (job: BatchJob) => void, now: () => string): Promise<Map<string, BatchOutcome>> {
    const job = await this.submit(calls, undefined, save, now, signal);
    const outcomes = await this.backend.wait(job, signal);
    save({ ...job, status: "ended" });
    return outcomes;
  }
}

/** Reads JSONL text into values, naming the line of a broken one. */
export function jsonLines(text: string, what: string): unknown[] {
  return text
    .split("\n")
    .map((line, i) => ({ line: line.trim(), n: i + 1 }))
    .filter(({ line }) => line !== "")
    .map(({ line, n }) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new IterAlignError("HTTP_BAD_RESPONSE", `${what}: line ${n} is not JSON`, { retryable: true });
      }
    });
}
