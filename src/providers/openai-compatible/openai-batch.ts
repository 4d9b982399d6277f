import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { BatchJob } from "../../spec/call-log.js";
import { IterAlignError } from "../../spec/errors.js";
import { jsonLines, type BatchBackend, type BatchCall, type BatchOutcome } from "../http/batch.js";
import { displayUrl } from "../http/http-call.js";
import type { RestClient } from "../http/rest-client.js";
import { abortableSleep } from "../http/rest-client.js";

/** The endpoint every line of a chat batch names (OpenAI's Batch API and `vllm run-batch` both take it). */
const CHAT_URL = "/v1/chat/completions";

/** One line of an OpenAI-format batch input file. */
export function batchInputLine(call: BatchCall): string {
  return JSON.stringify({ custom_id: call.customId, method: "POST", url: CHAT_URL, body: call.body });
}

const OutputLineSchema = z.object({
  custom_id: z.string(),
  response: z
    .object({ status_code: z.number(), body: z.unknown() })
    .nullable()
    .optional(),
  error: z.object({ code: z.string().nullable().optional(), message: z.string() }).nullable().optional(),
});

/**
 * Outcomes from OpenAI-format batch output (and error) files, by custom id: a 2xx `response.body` is the answer;
 * anything else is that call's error, which becomes the item's error row (a resumed run tries it again).
 */
export function parseBatchOutput(text: string, what: string): Map<string, BatchOutcome> {
  const out = new Map<string, BatchOutcome>();
  for (const raw of jsonLines(text, what)) {
    const parsed = OutputLineSchema.safeParse(raw);
    if (!parsed.success) throw new IterAlignError("HTTP_BAD_RESPONSE", `${what}: a line is not a batch output line`, { retryable: true });
    const { custom_id: id, response, error } = parsed.data;
    if (response && response.status_code >= 200 && response.status_code < 300) {
      out.set(id, { ok: true, body: response.body });
      continue;
    }
    const status = response?.status_code;
    const message =
      error?.message ??
      ((response?.body as { error?: { message?: string } } | undefined)?.error?.message ?? `status ${String(status ?? "unknown")}`);
    out.set(id, {
      ok: false,
      error: new IterAlignError("HTTP_STATUS", `batch call ${id.slice(0, 12)} failed${status ? ` with HTTP ${status}` : ""}: ${message}`, {
        // Not retried within this run (that would make a job per retried call); the error row is retried on resume.
        retryable: false,
        details: { ...(status ? { status } : {}), customId: id },
      }),
    });
  }
  return out;
}

const FileSchema = z.object({ id: z.string() });
const BatchSchema = z.object({
  id: z.string(),
  status: z.string(),
  input_file_id: z.string().nullable().optional(),
  output_file_id: z.string().nullable().optional(),
  error_file_id: z.string().nullable().optional(),
  errors: z.object({ data: z.array(z.object({ message: z.string() })).optional() }).nullable().optional(),
});
const BatchListSchema = z.object({ data: z.array(BatchSchema) });

/** OpenAI's Batch API: the input uploaded as a file (`purpose: batch`), one job, its output file read back. */
export class OpenAIBatchBackend implements BatchBackend {
  readonly provider = "openai-compatible";
  readonly endpoint: string;

  constructor(
    private readonly api: RestClient,
    private readonly pollMs: number,
  ) {
    this.endpoint = api.displayBaseUrl;
  }

  async submit(calls: readonly BatchCall[], job: BatchJob, save: (job: BatchJob) => void, signal: AbortSignal): Promise<BatchJob> {
    let current = job;
    if (current.inputRef === null) {
      const bytes = new TextEncoder().encode(`${calls.map(batchInputLine).join("\n")}\n`);
      const file = await this.api.upload("/files", "batch", `iteralign-${job.id.slice(0, 16)}.jsonl`, bytes, FileSchema, signal);
      current = { ...current, inputRef: file.id, status: "uploaded" };
      save(current);
    }
    const batch = await this.api.post("/batches", { input_file_id: current.inputRef, endpoint: CHAT_URL, completion_window: "24h" }, BatchSchema, signal, {
      retries: 0,
    });
    current = { ...current, externalId: batch.id, status: "submitted" };
    save(current);
    return current;
  }

  async recover(job: BatchJob, signal: AbortSignal): Promise<string | undefined> {
    try {
      const list = await this.api.get("/batches?limit=100", BatchListSchema, signal);
      return list.data.find((b) => b.input_file_id === job.inputRef && !["failed", "cancelled", "expired"].includes(b.status))?.id;
    } catch (err) {
      if (err instanceof IterAlignError && err.code === "ABORTED") throw err;
      return undefined;
    }
  }

  async wait(job: BatchJob, signal: AbortSignal): Promise<Map<string, BatchOutcome>> {
    const id = job.externalId as string;
    for (;;) {
      const batch = await this.api.get(`/batches/${encodeURIComponent(id)}`, BatchSchema, signal);
      if (batch.status === "failed") {
        const why = batch.errors?.data?.map((e) => e.message).join("; ") || "no reason given";
        throw new IterAlignError("HTTP_STATUS", `batch job ${id} at ${this.endpoint} failed: ${why}`, { details: { batch: id } });
      }
      if (["completed", "expired", "cancelled"].includes(batch.status)) {
        const outcomes = new Map<string, BatchOutcome>();
        for (const fileId of [batch.output_file_id, batch.error_file_id]) {
          if (!fileId) continue;
          const text = await this.api.text(`/files/${encodeURIComponent(fileId)}/content`, signal);
          for (const [key, value] of parseBatchOutput(text, `batch ${id} file ${fileId}`)) outcomes.set(key, value);
        }
        return outcomes;
      }
      await abortableSleep(this.pollMs, signal);
    }
  }
}

/**
 * Batch files for an offline runner of OpenAI's batch format (`vllm run-batch`): the input is written as
 * `<folder>/<job>.input.jsonl`, and the job ends when `<job>.output.jsonl` appears (written by the runner, read
 * whole once it is complete). A resumed run finds the same files.
 */
export class BatchFileBackend implements BatchBackend {
  readonly provider = "openai-compatible";
  readonly endpoint: string;

  constructor(
    private readonly folder: string,
    private readonly model: string,
    private readonly pollMs: number,
    private readonly notify?: (message: string) => void,
  ) {
    this.endpoint = `file:${path.resolve(folder)}`;
  }

  paths(job: BatchJob): { input: string; output: string } {
    return { input: path.join(this.folder, `${job.id.slice(0, 24)}.input.jsonl`), output: path.join(this.folder, `${job.id.slice(0, 24)}.output.jsonl`) };
  }

  async submit(calls: readonly BatchCall[], job: BatchJob, save: (job: BatchJob) => void): Promise<BatchJob> {
    const { input, output } = this.paths(job);
    mkdirSync(this.folder, { recursive: true });
    const tmp = `${input}.tmp-${process.pid}`;
    writeFileSync(tmp, `${calls.map(batchInputLine).join("\n")}\n`);
    renameSync(tmp, input);
    const current: BatchJob = { ...job, inputRef: input, externalId: path.basename(input), status: "submitted" };
    save(current);
    this.notify?.(`wrote ${calls.length} calls to ${input}; answer them with: vllm run-batch -i ${input} -o ${output} --model ${this.model}`);
    return current;
  }

  async recover(job: BatchJob): Promise<string | undefined> {
    return existsSync(this.paths(job).input) ? path.basename(this.paths(job).input) : undefined;
  }

  async wait(job: BatchJob, signal: AbortSignal): Promise<Map<string, BatchOutcome>> {
    const { output } = this.paths(job);
    for (;;) {
      if (existsSync(output)) {
        const text = readFileSync(output, "utf8");
        // A runner still writing the file: a last line without its newline is not complete yet.
        if (text.endsWith("\n")) {
          const outcomes = parseBatchOutput(text, output);
          if (job.customIds.every((id) => outcomes.has(id))) return outcomes;
        }
      }
      await abortableSleep(this.pollMs, signal);
    }
  }
}

/** The endpoint name of an API root as batch jobs record it. */
export function batchEndpoint(baseUrl: string): string {
  return displayUrl(baseUrl);
}
