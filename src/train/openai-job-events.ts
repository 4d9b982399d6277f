import { z } from "zod";
import type { FineTuningApi, FineTuningEvent } from "./openai-fine-tuning-api.js";

/** `data` of a `metrics` event (OpenAI: step, total_steps, train_loss, train_mean_token_accuracy, ...). */
const MetricsDataSchema = z.object({
  step: z.number().int().nonnegative(),
  total_steps: z.number().int().positive().optional(),
  train_loss: z.number().optional(),
});
export type JobMetrics = z.infer<typeof MetricsDataSchema>;

/** Events per page by default; the API's maximum. */
const PAGE_LIMIT = 100;
/** Pages read per poll at most (10 000 events), so a server that ignores `after` cannot loop us forever. */
const MAX_PAGES = 100;

/** What {@link JobEventReader} does with events. */
export interface JobEventSink {
  /** A new event, in chronological order; not called again for it, across restarts. */
  report(event: FineTuningEvent): void;
  /** A metrics event; `reported` is false for events already reported before a restart. */
  metrics(metrics: JobMetrics, event: FineTuningEvent, reported: boolean): void;
  /** The newest event id reported so far (to persist, so a resumed trainer does not report it again). */
  reportedUpTo(eventId: string): void;
}

/**
 * Reads a job's new events. The API lists events newest first and pages to older ones with `after`, so each
 * poll reads pages until it meets an event it has already seen, then hands the new ones over oldest first.
 *
 * After a restart (`lastReportedId` set) the first poll reads the whole history, so metrics such as the loss
 * curve are complete, but reports only what came after `lastReportedId`: the training log gets no duplicates.
 */
export class JobEventReader {
  private readonly seen = new Set<string>();
  private resumeMarker: string | undefined;

  constructor(
    private readonly api: FineTuningApi,
    private readonly jobId: string,
    private readonly sink: JobEventSink,
    lastReportedId?: string,
    private readonly pageLimit = PAGE_LIMIT,
  ) {
    this.resumeMarker = lastReportedId;
  }

  /** Reads and hands over the events that appeared since the last poll; returns how many were reported. */
  async poll(signal: AbortSignal): Promise<number> {
    const fresh = await this.readUnseen(signal);
    let silentUpTo = -1;
    if (this.resumeMarker !== undefined) {
      silentUpTo = fresh.findIndex((e) => e.id === this.resumeMarker);
      this.resumeMarker = undefined;
    }
    let reported = 0;
    fresh.forEach((event, index) => {
      this.seen.add(event.id);
      const isNew = index > silentUpTo;
      if (isNew) {
        this.sink.report(event);
        reported++;
      }
      if (event.type === "metrics") {
        const metrics = MetricsDataSchema.safeParse(event.data);
        if (metrics.success) this.sink.metrics(metrics.data, event, isNew);
      }
    });
    const newest = fresh.at(-1);
    if (reported > 0 && newest) this.sink.reportedUpTo(newest.id);
    return reported;
  }

  /** Unseen events, oldest first. */
  private async readUnseen(signal: AbortSignal): Promise<FineTuningEvent[]> {
    const newestFirst: FineTuningEvent[] = [];
    const inThisRead = new Set<string>();
    let after: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const list = await this.api.listEvents(this.jobId, { limit: this.pageLimit, ...(after !== undefined ? { after } : {}) }, signal);
      let caughtUp = false;
      for (const event of list.data) {
        if (this.seen.has(event.id) || inThisRead.has(event.id)) {
          caughtUp = true;
          break;
        }
        inThisRead.add(event.id);
        newestFirst.push(event);
      }
      const last = list.data.at(-1);
      if (caughtUp || list.has_more !== true || last === undefined) break;
      after = last.id;
    }
    return newestFirst.reverse();
  }
}
