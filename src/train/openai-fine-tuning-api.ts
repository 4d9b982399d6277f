import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { RestClient, type RestClientOptions } from "../providers/http/rest-client.js";
import { IterAlignError } from "../spec/errors.js";

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
export type FineTuningApiOptions = RestClientOptions;

/**
 * A fetch-based client of the fine-tuning endpoints. Every failure is a typed IterAlignError naming the
 * endpoint (never the key); transient failures are retried with full-jitter backoff, and the caller's signal
 * ends both a request and a backoff wait at once with ABORTED.
 */
export class FineTuningApi extends RestClient {
  /** The same client, telling `onRetry` about each retry. */
  withRetryLog(onRetry: (message: string) => void): FineTuningApi {
    return new FineTuningApi({ ...this.options, onRetry });
  }

  /** `POST /files` (multipart, `purpose=fine-tune`) with the file's bytes as read now. */
  async uploadFile(file: string, signal: AbortSignal): Promise<z.infer<typeof FileObjectSchema>> {
    return this.upload("/files", "fine-tune", path.basename(file), readFileSync(file), FileObjectSchema, signal);
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
}

export { abortableSleep } from "../providers/http/rest-client.js";
