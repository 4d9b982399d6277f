import { z } from "zod";

/** Kind of model call, as recorded. */
export const CallKindSchema = z.enum(["generate", "generateObject", "scoreContinuations", "embed"]);
export type CallKind = z.infer<typeof CallKindSchema>;

/**
 * One finished model call. `key` is the content address: sha256 of the canonical JSON of
 * (provider, modelId, kind, params, messages/inputs, seed). Keys and rows never hold secrets.
 */
export const CallRecordSchema = z.object({
  key: z.string().regex(/^[0-9a-f]{64}$/),
  provider: z.string(),
  modelId: z.string(),
  kind: CallKindSchema,
  /** Canonical JSON of what was asked (the hashed content). */
  request: z.string(),
  /** JSON of the result as returned to the caller (without the `cached` flag). */
  response: z.string(),
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  /** Prompt tokens read from the provider's prompt cache (part of promptTokens). */
  cachedPromptTokens: z.number().int().nonnegative().default(0),
  /** Dollars the call cost at the model's price (0 for models without one). */
  costUsd: z.number().nonnegative().default(0),
  latencyMs: z.number().nonnegative(),
  createdAt: z.string(),
  runId: z.string().nullable(),
  role: z.string().nullable(),
});
export type CallRecord = z.infer<typeof CallRecordSchema>;

/** Where finished calls are kept: the response cache and the token/latency accounting. */
export interface CallLog {
  /** The newest finished call with this key, if any. */
  getCall(key: string): CallRecord | undefined;
  /** Durably records a finished call before returning. */
  putCall(record: CallRecord): void;
}

/**
 * A batch job of model calls sent to a provider's batch API (or written as a batch file), kept durably so that a
 * restarted run polls the same job instead of paying for a second one. `customIds` are the calls' content
 * addresses, so the same calls always map to the same job.
 */
export const BatchJobSchema = z.object({
  /** Our id of the job: sha256 of the provider, endpoint and sorted custom ids. */
  id: z.string().min(1),
  provider: z.string(),
  /** Where the job was sent: an API root (credentials-free) or a batch folder. */
  endpoint: z.string(),
  /** The provider's job id once it was created (null while only the input was uploaded or written). */
  externalId: z.string().nullable(),
  /** The uploaded input file's id (OpenAI), or the input file's path (`file` mode). */
  inputRef: z.string().nullable(),
  customIds: z.array(z.string()),
  status: z.enum(["uploaded", "submitted", "ended"]),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type BatchJob = z.infer<typeof BatchJobSchema>;

/** Where batch jobs are kept (the run store). */
export interface BatchJobLog {
  /** Inserts or replaces the job with this id, durably, before returning. */
  putBatchJob(job: BatchJob): void;
  /** The provider's jobs, newest first. */
  listBatchJobs(provider: string): BatchJob[];
}
