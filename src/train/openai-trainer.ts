import path from "node:path";
import { z } from "zod";
import { BaseUrlSchema } from "../util/url.js";
import { displayUrl, redact } from "../providers/http/http-call.js";
import { IterAlignError } from "../spec/errors.js";
import {
  FineTuningApi,
  TERMINAL_JOB_STATUSES,
  abortableSleep,
  type FineTuningJob,
} from "./openai-fine-tuning-api.js";
import { JobEventReader } from "./openai-job-events.js";
import { TrainingLog } from "./openai-training-log.js";
import { sha256OfFiles } from "./trainer.js";
import type { TrainInput, TrainResult, Trainer } from "../spec/trainer.js";

export const OpenAITrainerOptionsSchema = z
  .object({
    baseUrl: BaseUrlSchema
      .default("https://api.openai.com/v1")
      .describe("Fine-tuning API root including `/v1`; any service implementing OpenAI's files and fine_tuning endpoints."),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional()
      .describe("Name of the environment variable holding the API key (keys never go in config files, the store or logs)."),
    method: z
      .enum(["sft", "dpo"])
      .default("sft")
      .describe("`sft`: supervised on the iteration's OpenAI chat file; `dpo`: preference tuning on its OpenAI preference file."),
    baseModel: z
      .string()
      .min(1)
      .optional()
      .describe("Model id to fine-tune. Default: the model the iteration red-teamed (the previous fine-tune, as in the paper)."),
    suffix: z.string().min(1).max(64).optional().describe("Up to 64 characters added to the fine-tuned model's name."),
    hyperparameters: z
      .object({
        nEpochs: z.number().int().positive().optional().describe("Epochs over the training file (default: the service's `auto`)."),
        learningRateMultiplier: z.number().positive().optional().describe("Scales the service's base learning rate."),
        batchSize: z.number().int().positive().optional().describe("Examples per batch."),
        beta: z.number().positive().optional().describe("DPO only: how strongly the policy is held to the reference model."),
      })
      .strict()
      .default({})
      .describe("Training hyperparameters; each one left out is chosen by the service."),
    pollIntervalMs: z.number().int().positive().default(10_000).describe("First wait between two polls of the job."),
    maxPollIntervalMs: z
      .number()
      .int()
      .positive()
      .default(60_000)
      .describe("The wait doubles while nothing changes, up to this; it drops back to pollIntervalMs when something does."),
    timeoutMs: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("Longest time a job may take from its creation (across restarts); past it the job is cancelled. Default: no limit."),
    requestTimeoutMs: z.number().int().positive().default(300_000).describe("Deadline of one HTTP call (the upload included)."),
    retries: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(5)
      .describe("Retries of an HTTP call that failed for a transient reason (429, 5xx, network)."),
    retryDelayMs: z.number().int().min(0).default(1_000).describe("Backoff of the first retry; doubles per retry (Retry-After wins)."),
  })
  .strict()
  .superRefine((options, ctx) => {
    if (options.method !== "dpo" && options.hyperparameters.beta !== undefined) {
      ctx.addIssue({ code: "custom", path: ["hyperparameters", "beta"], message: "beta applies to method: dpo only" });
    }
    if (options.maxPollIntervalMs < options.pollIntervalMs) {
      ctx.addIssue({ code: "custom", path: ["maxPollIntervalMs"], message: "must be at least pollIntervalMs" });
    }
  });
export type OpenAITrainerOptions = z.input<typeof OpenAITrainerOptionsSchema>;
type ResolvedOptions = z.infer<typeof OpenAITrainerOptionsSchema>;

/** What a trainer needs from its surroundings; injectable for tests. */
export interface OpenAITrainerDeps {
  /** Where `apiKeyEnv` is read. Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly fetch?: typeof fetch;
}

/** Durable state, kept in the iteration's TrainerState so a restarted iteralign picks the job up. */
const UploadStateSchema = z.object({ fileId: z.string(), baseUrl: z.string(), method: z.enum(["sft", "dpo"]), dataHash: z.string() });
const JobStateSchema = z.object({ jobId: z.string(), fileId: z.string(), model: z.string(), createdAtMs: z.number() });
type UploadState = z.infer<typeof UploadStateSchema>;
type JobState = z.infer<typeof JobStateSchema>;
type SucceededJob = FineTuningJob & { readonly fine_tuned_model: string };
const STATE_UPLOAD = "openai.upload";
const STATE_JOB = "openai.job";
const STATE_LAST_EVENT = "openai.lastEventId";

/**
 * Fine-tunes through the OpenAI fine-tuning API (or a compatible service): uploads the iteration's chat (SFT) or
 * preference (DPO) JSONL, creates a job, polls it with backoff while streaming its events, and returns the
 * fine-tuned model id. The uploaded file id and the job id are committed to the durable state as soon as they
 * exist, so a restarted run resumes polling the same job instead of paying for a second one. Aborting stops
 * polling but leaves the hosted job running, for that reason.
 */
export class OpenAITrainer implements Trainer {
  readonly name = "openai";
  /** OpenAI's fine-tuning API refuses training files with fewer examples. */
  readonly minExamples = 10;
  private readonly options: ResolvedOptions;
  private readonly api: FineTuningApi;
  private readonly secrets: readonly string[];

  constructor(options: OpenAITrainerOptions, deps: OpenAITrainerDeps = {}) {
    const parsed = OpenAITrainerOptionsSchema.safeParse(options);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      throw new IterAlignError("CONFIG_INVALID", `openai trainer options are invalid: ${problems}`);
    }
    this.options = parsed.data;
    let apiKey: string | undefined;
    if (this.options.apiKeyEnv !== undefined) {
      apiKey = (deps.env ?? process.env)[this.options.apiKeyEnv];
      if (!apiKey) {
        throw new IterAlignError("CONFIG_INVALID", `openai trainer: environment variable ${this.options.apiKeyEnv} is not set`);
      }
    }
    this.secrets = apiKey ? [apiKey] : [];
    this.api = new FineTuningApi({
      baseUrl: this.options.baseUrl,
      ...(apiKey ? { apiKey } : {}),
      fetch: deps.fetch ?? globalThis.fetch,
      requestTimeoutMs: this.options.requestTimeoutMs,
      retries: this.options.retries,
      retryDelayMs: this.options.retryDelayMs,
    });
  }

  async train(input: TrainInput): Promise<TrainResult> {
    const log = new TrainingLog(path.join(input.outDir, "train.log"), input.onProgress, this.secrets);
    const api = this.api.withRetryLog((message) => log.status(message));
    const file = this.options.method === "sft" ? input.files.openaiChat : input.files.openaiPreference;
    const model = this.options.baseModel ?? modelToTune(input);

    const { job: jobState, dataHash } = await this.startOrResume(api, input, log, file, model);
    const lossCurve = new Map<number, number>();
    const events = new JobEventReader(
      api,
      jobState.jobId,
      {
        report: (event) => log.event(event),
        metrics: (metrics, _event, reported) => {
          if (metrics.train_loss !== undefined) lossCurve.set(metrics.step, metrics.train_loss);
          if (reported) {
            input.onProgress({
              type: "step",
              step: metrics.step,
              ...(metrics.total_steps !== undefined ? { totalSteps: metrics.total_steps } : {}),
              ...(metrics.train_loss !== undefined ? { loss: metrics.train_loss } : {}),
            });
          }
        },
        reportedUpTo: (eventId) => input.state.set(STATE_LAST_EVENT, eventId),
      },
      optionalString(input.state.get(STATE_LAST_EVENT)),
    );
    const job = await this.poll(api, jobState, events, log, input.signal);

    const curve = [...lossCurve.entries()].sort(([a], [b]) => a - b).map(([step, loss]) => ({ step, loss }));
    const finalLoss = curve.at(-1)?.loss;
    const seconds = typeof job.created_at === "number" && typeof job.finished_at === "number" ? job.finished_at - job.created_at : undefined;
    const fineTuned = job.fine_tuned_model;
    log.status(`job ${job.id} succeeded: ${fineTuned}`);
    return {
      model: { provider: "openai-compatible", model: fineTuned },
      trainer: this.name,
      settings: this.settings(jobState),
      dataHash,
      examples: input.examples.length,
      metrics: {
        ...(finalLoss !== undefined ? { finalLoss } : {}),
        ...(seconds !== undefined ? { seconds } : {}),
        ...(curve.length > 0 ? { lossCurve: curve } : {}),
      },
    };
  }

  /** Returns the job to poll: the stored one while it can still succeed, else a new one (reusing the upload). */
  private async startOrResume(
    api: FineTuningApi,
    input: TrainInput,
    log: TrainingLog,
    file: string,
    model: string,
  ): Promise<{ job: JobState; dataHash: string }> {
    const stored = JobStateSchema.safeParse(input.state.get(STATE_JOB));
    const storedUpload = UploadStateSchema.safeParse(input.state.get(STATE_UPLOAD));
    if (stored.success) {
      const job = await this.retrieveStoredJob(api, stored.data.jobId, log, input.signal);
      if (job && job.status !== "failed" && job.status !== "cancelled") {
        log.status(`resuming job ${job.id} (${job.status})`);
        const dataHash = storedUpload.success ? storedUpload.data.dataHash : sha256OfFiles([file]);
        return { job: stored.data, dataHash };
      }
      // The run was resumed after this job failed: resuming means trying again, with the file already uploaded.
      if (job) log.status(`job ${job.id} ended ${job.status} (${failureReason(job, undefined)}); starting a new job`);
    }

    const dataHash = sha256OfFiles([file]);
    let upload: UploadState | undefined =
      storedUpload.success &&
      storedUpload.data.method === this.options.method &&
      storedUpload.data.dataHash === dataHash &&
      storedUpload.data.baseUrl === this.displayBaseUrl
        ? storedUpload.data
        : undefined;
    if (upload === undefined) {
      log.status(`uploading ${path.basename(file)} to ${api.displayBaseUrl}`);
      const uploaded = await api.uploadFile(file, input.signal);
      upload = { fileId: uploaded.id, baseUrl: this.displayBaseUrl, method: this.options.method, dataHash };
      input.state.set(STATE_UPLOAD, upload);
      log.status(`uploaded ${path.basename(file)} as ${uploaded.id}`);
    } else if (!stored.success) {
      // A crash between creating the job and recording it: that job may exist; do not start (and bill) a second.
      const orphan = await api.findJobForFile(upload.fileId, input.signal);
      if (orphan) return { job: this.recordJob(input, orphan, upload.fileId, model, log, "found"), dataHash };
    }
    const created = await api.createJob(this.jobBody(upload.fileId, model), upload.fileId, input.signal);
    return { job: this.recordJob(input, created, upload.fileId, model, log, "created"), dataHash };
  }

  /** The stored job, or undefined when the service no longer knows it (deleted, or another account or URL). */
  private async retrieveStoredJob(api: FineTuningApi, jobId: string, log: TrainingLog, signal: AbortSignal): Promise<FineTuningJob | undefined> {
    try {
      return await api.retrieveJob(jobId, signal);
    } catch (err) {
      if (err instanceof IterAlignError && err.code === "HTTP_STATUS" && err.details.status === 404) {
        log.status(`job ${jobId} is unknown at ${api.displayBaseUrl}; starting a new job`);
        return undefined;
      }
      throw err;
    }
  }

  private recordJob(input: TrainInput, job: FineTuningJob, fileId: string, model: string, log: TrainingLog, how: string): JobState {
    const state: JobState = { jobId: job.id, fileId, model, createdAtMs: Date.now() };
    input.state.set(STATE_JOB, state);
    // Event ids belong to one job; a new job's events are all new.
    input.state.set(STATE_LAST_EVENT, null);
    log.status(`${how} fine-tuning job ${job.id} (${this.options.method}, ${model}, ${job.status})`);
    return state;
  }

  /** `POST /fine_tuning/jobs` body: the documented `method` object with the hyperparameters given. */
  private jobBody(fileId: string, model: string): Record<string, unknown> {
    const h = this.options.hyperparameters;
    const hyperparameters: Record<string, number> = {};
    if (h.nEpochs !== undefined) hyperparameters.n_epochs = h.nEpochs;
    if (h.batchSize !== undefined) hyperparameters.batch_size = h.batchSize;
    if (h.learningRateMultiplier !== undefined) hyperparameters.learning_rate_multiplier = h.learningRateMultiplier;
    if (h.beta !== undefined) hyperparameters.beta = h.beta;
    const type = this.options.method === "sft" ? "supervised" : "dpo";
    const settings = Object.keys(hyperparameters).length > 0 ? { [type]: { hyperparameters } } : {};
    return {
      model,
      training_file: fileId,
      ...(this.options.suffix !== undefined ? { suffix: this.options.suffix } : {}),
      method: { type, ...settings },
    };
  }

  /** Polls until the job ends; the wait doubles while nothing changes. Returns the succeeded job. */
  private async poll(
    api: FineTuningApi,
    state: JobState,
    events: JobEventReader,
    log: TrainingLog,
    signal: AbortSignal,
  ): Promise<SucceededJob> {
    let interval = this.options.pollIntervalMs;
    let lastStatus: string | undefined;
    for (;;) {
      const job = await api.retrieveJob(state.jobId, signal);
      const reported = await events.poll(signal);
      const changed = job.status !== lastStatus;
      if (changed) log.status(`job ${job.id}: ${job.status}`);
      lastStatus = job.status;
      if (TERMINAL_JOB_STATUSES.has(job.status)) return this.finished(job, log);
      if (this.options.timeoutMs !== undefined && Date.now() - state.createdAtMs > this.options.timeoutMs) {
        throw await this.cancelForTimeout(api, job, log, signal);
      }
      interval = changed || reported > 0 ? this.options.pollIntervalMs : Math.min(interval * 2, this.options.maxPollIntervalMs);
      await abortableSleep(interval, signal);
    }
  }

  private finished(job: FineTuningJob, log: TrainingLog): SucceededJob {
    if (job.status === "succeeded") {
      const fineTuned = job.fine_tuned_model;
      if (!fineTuned) {
        throw new IterAlignError("HTTP_BAD_RESPONSE", `fine-tuning job ${job.id} succeeded but names no fine_tuned_model`, {
          details: { jobId: job.id, url: this.displayBaseUrl },
        });
      }
      return { ...job, fine_tuned_model: fineTuned };
    }
    const reason = this.redacted(failureReason(job, log.lastError));
    throw new IterAlignError("TRAINING_FAILED", `fine-tuning job ${job.id} ${job.status}: ${reason}`, {
      details: {
        jobId: job.id,
        status: job.status,
        reason,
        ...(job.error?.code ? { providerCode: job.error.code } : {}),
        ...(job.error?.param ? { param: job.error.param } : {}),
      },
    });
  }

  private async cancelForTimeout(api: FineTuningApi, job: FineTuningJob, log: TrainingLog, signal: AbortSignal): Promise<IterAlignError> {
    const limit = this.options.timeoutMs ?? 0;
    let outcome = "it was cancelled";
    try {
      await api.cancelJob(job.id, signal);
    } catch (err) {
      outcome = `cancelling it failed (${err instanceof Error ? err.message : String(err)}); cancel it yourself`;
    }
    log.status(`job ${job.id} passed timeoutMs ${String(limit)}; ${outcome}`);
    return new IterAlignError("TIMEOUT", `fine-tuning job ${job.id} took longer than ${String(limit)} ms (${job.status}); ${outcome}`, {
      details: { jobId: job.id, status: job.status, timeoutMs: limit },
    });
  }

  /** Settings recorded with the iteration: no key, no URL credentials. */
  private settings(job: JobState): Record<string, unknown> {
    return {
      baseUrl: this.displayBaseUrl,
      ...(this.options.apiKeyEnv !== undefined ? { apiKeyEnv: this.options.apiKeyEnv } : {}),
      method: this.options.method,
      baseModel: job.model,
      ...(this.options.suffix !== undefined ? { suffix: this.options.suffix } : {}),
      hyperparameters: this.options.hyperparameters,
      jobId: job.jobId,
      fileId: job.fileId,
    };
  }

  private get displayBaseUrl(): string {
    return displayUrl(this.options.baseUrl);
  }

  private redacted(text: string): string {
    return redact(text, this.secrets);
  }
}

/** The id to fine-tune when `baseModel` is not set: the current model, which must be a hosted one. */
function modelToTune(input: TrainInput): string {
  if (input.current.provider !== "openai-compatible") {
    throw new IterAlignError(
      "CONFIG_INVALID",
      `the openai trainer fine-tunes hosted models, but iteration ${String(input.iteration)} red-teamed a ${input.current.provider} model (${input.current.model}); set the trainer's baseModel`,
    );
  }
  return input.current.model;
}

/** The provider's reason for a failed job: `error.message` (and code), else the last error event. */
function failureReason(job: FineTuningJob, lastErrorEvent: string | undefined): string {
  const message = job.error?.message ?? undefined;
  const code = job.error?.code ?? undefined;
  if (message) return code ? `${message} (${code})` : message;
  if (code) return code;
  return lastErrorEvent ?? (job.status === "cancelled" ? "the job was cancelled" : "the service gave no reason");
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
