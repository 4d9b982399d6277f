import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { HttpCall, displayUrl } from "../providers/openai-compatible/http.js";
import { backoffDelayMs } from "../providers/middleware/retry.js";
import { IterAlignError } from "../spec/errors.js";
import { endpointUrl } from "../util/url.js";

/*
 * The part of the OpenAI fine-tuning API the `openai` trainer uses: files, fine-tuning jobs and their events.
 * Only the fields read are declared (zod strips the rest), and optional/nullable is generous so compatible
 * services that omit fields still work.
 */

/** Body of `POST /files`. */
export const FileObjectSchema = z.object({ id: z.string().min(1) });

/** `error` of a fine-tuning job: null, `{}`, or `{code, message, param}`. */
export const JobErrorSchema = z.object({
  code: z.string().nullable().optional(),
  message: z.string().nullable().optional(),
  param: z.string().nullable().optional(),
});

/** A fine-tuning job (`POST /fine_tuning/jobs`, `GET /fine_tuning/jobs/{id}`). */
export const FineTuningJobSchema = z.object({
  id: z.string().min(1),
  status: z.string().min(1),
  model: z.string().nullable().optional(),
  fine_tuned_model: z.string().nullable().optional(),
  training_file: z.string().nullable().optional(),
  trained_tokens: z.number().nullable().optional(),
  created_at: z.number().nullable().optional(),
  finished_at: z.number().nullable().optional(),
  error: JobErrorSchema.nullable().optional(),
});
export type FineTuningJob = z.infer<typeof FineTuningJobSchema>;

/** Body of `GET /fine_tuning/jobs`. */
export const FineTuningJobListSchema = z.object({
  data: z.array(FineTuningJobSchema),
  has_more: z.boolean().optional(),
});

/** One `fine_tuning.job.event`. `type` is `message` or `metrics`; metrics carry `data`. */
export const FineTuningEventSchema = z.object({
  id: z.string().min(1),
  created_at: z.number(),
  level: z.string().optional(),
  message: z.string(),
  type: z.string().nullable().optional(),
  data: z.unknown().optional(),
});
export type FineTuningEvent = z.infer<typeof FineTuningEventSchema>;

/** Body of `GET /fine_tuning/jobs/{id}/events`: newest event first; `after` pages to older ones. */
export const FineTuningEventListSchema = z.object({
  data: z.array(FineTuningEventSchema),
  has_more: z.boolean().optional(),
});
export type FineTuningEventList = z.infer<typeof FineTuningEventListSchema>;

/** Statuses after which a job never changes again. */
export const TERMINAL_JOB_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);

/** Connection settings and retry policy of {@link FineTuningApi}. */
export interface FineTuningApiOptions {
  /** API root including the version segment, e.g. `https://api.openai.com/v1`. */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; redacted from every error. */
  readonly apiKey?: string;
  readonly fetch: typeof fetch;
  /** Deadline of one HTTP exchange (an upload included). */
  readonly requestTimeoutMs: number;
  /** Retries of a call that failed for a transient reason (429, 5xx, network, per-call timeout). */
  readonly retries: number;
  /** Backoff cap of the first retry; doubles per retry up to 30 s. A server's Retry-After wins. */
  readonly retryDelayMs: number;
  /** Told about each retry (for the training log). */
  readonly onRetry?: (message: string) => void;
}

const MAX_RETRY_DELAY_MS = 30_000;

/**
 * A fetch-based client of the fine-tuning endpoints. Every failure is a typed IterAlignError naming the
 * endpoint (never the key); transient failures are retried with full-jitter backoff, and the caller's signal
 * ends both a request and a backoff wait at once with ABORTED.
 */
export class FineTuningApi {
  private readonly root: string;
  private readonly secrets: readonly string[];

  constructor(private readonly options: FineTuningApiOptions) {
    this.root = options.baseUrl.replace(/\/+$/, "");
    this.secrets = options.apiKey ? [options.apiKey] : [];
  }

  /** The same client, telling `onRetry` about each retry. */
  withRetryLog(onRetry: (message: string) => void): FineTuningApi {
    return new FineTuningApi({ ...this.options, onRetry });
  }

  /** The API root as it may appear in logs and records. */
  get displayBaseUrl(): string {
    return displayUrl(this.root);
  }

  /** `POST /files` (multipart, `purpose=fine-tune`) with the file's bytes as read now. */
  async uploadFile(file: string, signal: AbortSignal): Promise<z.infer<typeof FileObjectSchema>> {
    const bytes = readFileSync(file);
    return this.request("POST", "/files", FileObjectSchema, signal, () => {
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", new Blob([bytes], { type: "application/jsonl" }), path.basename(file));
      return form;
    });
  }

  /**
   * `POST /fine_tuning/jobs`. Before retrying after a transient failure it looks for a job the failed attempt
   * may have created anyway (same training file), so a lost response does not start (and bill) a second job.
   */
  async createJob(body: Readonly<Record<string, unknown>>, fileId: string, signal: AbortSignal): Promise<FineTuningJob> {
    let attempt = 0;
    for (;;) {
      try {
        if (attempt > 0) {
          const existing = await this.findJobForFile(fileId, signal);
          if (existing) return existing;
        }
        return await this.request("POST", "/fine_tuning/jobs", FineTuningJobSchema, signal, () => JSON.stringify(body), {
          retries: 0,
        });
      } catch (err) {
        if (!this.shouldRetry(err, attempt, signal)) throw this.finalError(err, attempt);
        await this.backoff(err, attempt, "POST /fine_tuning/jobs", signal);
        attempt++;
      }
    }
  }

  /** `GET /fine_tuning/jobs/{id}`. */
  retrieveJob(jobId: string, signal: AbortSignal): Promise<FineTuningJob> {
    return this.request("GET", `/fine_tuning/jobs/${encodeURIComponent(jobId)}`, FineTuningJobSchema, signal);
  }

  /** `GET /fine_tuning/jobs/{id}/events?after=&limit=`. */
  listEvents(jobId: string, page: { after?: string; limit: number }, signal: AbortSignal): Promise<FineTuningEventList> {
    const query = new URLSearchParams({ limit: String(page.limit) });
    if (page.after !== undefined) query.set("after", page.after);
    return this.request(
      "GET",
      `/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?${query.toString()}`,
      FineTuningEventListSchema,
      signal,
    );
  }

  /** `POST /fine_tuning/jobs/{id}/cancel`. */
  cancelJob(jobId: string, signal: AbortSignal): Promise<FineTuningJob> {
    return this.request("POST", `/fine_tuning/jobs/${encodeURIComponent(jobId)}/cancel`, FineTuningJobSchema, signal);
  }

  /**
   * The newest job (first page of `GET /fine_tuning/jobs`) trained on `fileId` that has not failed or been
   * cancelled. Undefined when there is none or the service does not list jobs.
   */
  async findJobForFile(fileId: string, signal: AbortSignal): Promise<FineTuningJob | undefined> {
    let list: z.infer<typeof FineTuningJobListSchema>;
    try {
      list = await this.request("GET", "/fine_tuning/jobs?limit=100", FineTuningJobListSchema, signal);
    } catch (err) {
      // Listing only guards against duplicates; a service without it must not stop training.
      if (err instanceof IterAlignError && err.code === "ABORTED") throw err;
      return undefined;
    }
    return list.data.find(
      (job) => job.training_file === fileId && job.status !== "failed" && job.status !== "cancelled",
    );
  }

  /** One call with retries. `body` is rebuilt per attempt. */
  private async request<S extends z.ZodType>(
    method: "GET" | "POST",
    pathAndQuery: string,
    schema: S,
    signal: AbortSignal,
    body?: () => string | FormData,
    policy: { retries?: number } = {},
  ): Promise<z.infer<S>> {
    const retries = policy.retries ?? this.options.retries;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, pathAndQuery, schema, signal, body?.());
      } catch (err) {
        if (!this.shouldRetry(err, attempt, signal, retries)) throw this.finalError(err, attempt);
        await this.backoff(err, attempt, `${method} ${pathAndQuery.split("?")[0] ?? ""}`, signal);
      }
    }
  }

  private async once<S extends z.ZodType>(
    method: "GET" | "POST",
    pathAndQuery: string,
    schema: S,
    signal: AbortSignal,
    body: string | FormData | undefined,
  ): Promise<z.infer<S>> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    if (typeof body === "string") headers["content-type"] = "application/json";
    const call = new HttpCall({
      url: endpointUrl(this.root, pathAndQuery),
      headers,
      timeoutMs: this.options.requestTimeoutMs,
      signal,
      secrets: this.secrets,
    });
    try {
      let response: Response;
      try {
        response = await this.options.fetch(endpointUrl(this.root, pathAndQuery), {
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          signal: call.signal,
        });
      } catch (err) {
        throw call.failure(err, "connect");
      }
      if (!response.ok) throw await call.statusError(response);
      return await call.json(response, schema);
    } finally {
      call.dispose();
    }
  }

  private shouldRetry(err: unknown, attempt: number, signal: AbortSignal, retries = this.options.retries): boolean {
    return err instanceof IterAlignError && err.retryable && !signal.aborted && attempt < retries;
  }

  /** The error to throw: after retries, marked non-retryable with the attempt count so no layer retries again. */
  private finalError(err: unknown, attempt: number): unknown {
    if (!(err instanceof IterAlignError) || attempt === 0) return err;
    return new IterAlignError(err.code, `${err.message} (after ${String(attempt + 1)} attempts)`, {
      cause: err,
      details: { ...err.details, attempts: attempt + 1 },
      retryable: false,
    });
  }

  private async backoff(err: unknown, attempt: number, what: string, signal: AbortSignal): Promise<void> {
    const retryAfter = err instanceof IterAlignError ? err.details.retryAfterMs : undefined;
    const delay =
      typeof retryAfter === "number"
        ? Math.min(retryAfter, MAX_RETRY_DELAY_MS)
        : backoffDelayMs(attempt, { baseDelayMs: this.options.retryDelayMs, maxDelayMs: MAX_RETRY_DELAY_MS, random: Math.random });
    const reason = err instanceof Error ? err.message : String(err);
    this.options.onRetry?.(`${what} failed (${reason}); retry ${String(attempt + 1)} in ${String(delay)} ms`);
    await abortableSleep(delay, signal);
  }
}

/** Waits `ms`; rejects with ABORTED as soon as `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): IterAlignError => new IterAlignError("ABORTED", "aborted while waiting", { cause: signal.reason });
    if (signal.aborted) {
      reject(aborted());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
