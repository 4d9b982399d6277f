import { z } from "zod";
import type { Clock } from "./run-context.js";
import type { StageItem } from "../stages/stage-item.js";
import type { RecordRow, RunStore } from "../store/run-store.js";
import { faultPoint } from "../util/fault-points.js";

const ErrorPayloadSchema = z.object({
  status: z.literal("error"),
  id: z.string(),
  parentIds: z.array(z.string()),
  error: z.object({ code: z.string(), message: z.string(), rawText: z.string().optional() }),
});

/** Provenance fields a stored record may carry. */
interface Traceable {
  readonly id: string;
  readonly parentIds?: readonly string[];
  readonly model?: string | null;
  readonly promptHash?: string | null;
}

/**
 * Stage outputs in the run store. A stage's items and its completion marker are written in one transaction,
 * so after a crash a stage is either wholly recorded (and is loaded, not re-run) or not at all (and is re-run,
 * its finished model calls answered by the response cache).
 */
export class StageCheckpoint {
  constructor(
    private readonly store: RunStore,
    private readonly runId: string,
    private readonly clock: Clock,
  ) {}

  private markerId(iteration: number, stage: string): string {
    return `it${iteration}:done:${stage}`;
  }

  /** The stage's items if it completed before, else undefined. */
  load<T>(iteration: number, stage: string, schema: z.ZodType<T>): StageItem<T>[] | undefined {
    if (!this.store.getRecord(this.runId, this.markerId(iteration, stage))) return undefined;
    const itemSchema = z.union([z.object({ status: z.literal("ok"), record: schema }), ErrorPayloadSchema]);
    return this.store
      .getRecords({ runId: this.runId, stage, iteration }, { payload: itemSchema })
      .map((row) => row.payload as StageItem<T>);
  }

  /** What was recorded with a finished stage's marker (its time, tokens and cost), or undefined. */
  summary(iteration: number, stage: string): Record<string, unknown> | undefined {
    const marker = this.store.getRecord(this.runId, this.markerId(iteration, stage), {
      payload: z.object({ status: z.literal("ok"), record: z.record(z.string(), z.unknown()) }),
    });
    return marker?.payload.record;
  }

  /** Records a finished stage: every item and the marker, atomically. */
  save<T extends Traceable>(iteration: number, stage: string, items: readonly StageItem<T>[], summary: unknown = {}): void {
    this.store.putRecords(this.rows(iteration, stage, items, summary));
    faultPoint(this.markerId(iteration, stage));
  }

  /**
   * Replaces a finished stage's items and marker with new ones, atomically (a stage whose error rows were
   * retried on resume). The new rows come after every other record, in order.
   */
  replace<T extends Traceable>(iteration: number, stage: string, items: readonly StageItem<T>[], summary: unknown = {}): void {
    this.store.replaceRecords(this.runId, this.storedIds(iteration, stage), this.rows(iteration, stage, items, summary));
    faultPoint(this.markerId(iteration, stage));
  }

  /** Forgets a finished stage (its items and marker): it was computed from inputs that have since changed. */
  discard(iteration: number, stage: string): void {
    this.store.replaceRecords(this.runId, this.storedIds(iteration, stage), []);
  }

  private storedIds(iteration: number, stage: string): string[] {
    const ids = this.store.getRecords({ runId: this.runId, stage, iteration }).map((row) => row.id);
    return [...ids, this.markerId(iteration, stage)];
  }

  private rows<T extends Traceable>(iteration: number, stage: string, items: readonly StageItem<T>[], summary: unknown): RecordRow[] {
    const createdAt = this.clock.isoNow();
    const rows: RecordRow[] = items.map((item) => {
      if (item.status === "ok") {
        return {
          runId: this.runId,
          id: item.record.id,
          stage,
          iteration,
          kind: stage,
          parentIds: [...(item.record.parentIds ?? [])],
          model: item.record.model ?? null,
          promptHash: item.record.promptHash ?? null,
          status: "ok",
          payload: item,
          createdAt,
        };
      }
      return {
        runId: this.runId,
        id: item.id,
        stage,
        iteration,
        kind: stage,
        parentIds: [...item.parentIds],
        model: null,
        promptHash: null,
        status: "error",
        payload: item,
        createdAt,
      };
    });
    // Markers live in their own stage so loading a stage's items never meets them.
    rows.push({
      runId: this.runId,
      id: this.markerId(iteration, stage),
      stage: "marker",
      iteration,
      kind: "marker",
      parentIds: [],
      model: null,
      promptHash: null,
      status: "ok",
      payload: { status: "ok", record: summary },
      createdAt,
    });
    return rows;
  }

  /** A single value kept with an iteration (pool snapshots, metrics). */
  saveValue(iteration: number, stage: string, value: unknown): void {
    this.save(iteration, stage, [], value);
  }

  loadValue<T>(iteration: number, stage: string, schema: z.ZodType<T>): T | undefined {
    const marker = this.store.getRecord(this.runId, this.markerId(iteration, stage), {
      payload: z.object({ status: z.literal("ok"), record: schema }),
    });
    return marker?.payload.record;
  }
}
