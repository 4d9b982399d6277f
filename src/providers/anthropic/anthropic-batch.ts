import type { BatchJob } from "../../spec/call-log.js";
import { IterAlignError } from "../../spec/errors.js";
import { jsonLines, type BatchBackend, type BatchCall, type BatchOutcome } from "../http/batch.js";
import type { RestClient } from "../http/rest-client.js";
import { abortableSleep } from "../http/rest-client.js";
import { BatchResultLineSchema, MessageBatchSchema } from "./wire.js";

/** Anthropic's Message Batches: one `POST /messages/batches` with every call's params, polled until it ended. */
export class AnthropicBatchBackend implements BatchBackend {
  readonly provider = "anthropic";
  readonly endpoint: string;

  constructor(
    private readonly api: RestClient,
    private readonly pollMs: number,
  ) {
    this.endpoint = api.displayBaseUrl;
  }

  async submit(calls: readonly BatchCall[], job: BatchJob, save: (job: BatchJob) => void, signal: AbortSignal): Promise<BatchJob> {
    // Nothing is uploaded first: the job is created in one call, so there is no half-made job to recover.
    const batch = await this.api.post("/messages/batches", { requests: calls.map((c) => ({ custom_id: c.customId.slice(0, 64), params: c.body })) }, MessageBatchSchema, signal, {
      retries: 0,
    });
    const current: BatchJob = { ...job, externalId: batch.id, status: "submitted" };
    save(current);
    return current;
  }

  async recover(): Promise<string | undefined> {
    return undefined;
  }

  async wait(job: BatchJob, signal: AbortSignal): Promise<Map<string, BatchOutcome>> {
    const id = job.externalId as string;
    for (;;) {
      const batch = await this.api.get(`/messages/batches/${encodeURIComponent(id)}`, MessageBatchSchema, signal);
      if (batch.processing_status === "ended") {
        if (!batch.results_url) throw new IterAlignError("HTTP_BAD_RESPONSE", `message batch ${id} ended without a results_url`, { retryable: true });
        const text = await this.api.text(batch.results_url, signal);
        // Anthropic's custom ids are at most 64 characters: map the (shortened) ids back to the calls' own.
        const byShort = new Map(job.customIds.map((full) => [full.slice(0, 64), full]));
        const out = new Map<string, BatchOutcome>();
        for (const raw of jsonLines(text, `message batch ${id} results`)) {
          const line = BatchResultLineSchema.safeParse(raw);
          if (!line.success) throw new IterAlignError("HTTP_BAD_RESPONSE", `message batch ${id}: a results line has an unexpected shape`, { retryable: true });
          const full = byShort.get(line.data.custom_id) ?? line.data.custom_id;
          const result = line.data.result;
          if (result.type === "succeeded") out.set(full, { ok: true, body: result.message });
          else {
            const message = result.type === "errored" ? (result.error.error?.message ?? "errored") : result.type;
            out.set(full, {
              ok: false,
              error: new IterAlignError("HTTP_STATUS", `batch call ${full.slice(0, 12)} ${result.type}: ${message}`, { retryable: false, details: { customId: full } }),
            });
          }
        }
        return out;
      }
      await abortableSleep(this.pollMs, signal);
    }
  }
}
