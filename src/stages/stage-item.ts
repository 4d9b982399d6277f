import type { StageErrorItem, StageItem, StageItemError } from "../spec/stage-item.js";

export type { StageErrorItem, StageItem, StageItemError };
import { IterAlignError, OutputInvalidError } from "../spec/errors.js";

/** Wraps a record as an ok item. */
export function okItem<T>(record: T): StageItem<T> {
  return { status: "ok", record };
}

/** Builds an error row from an IterAlignError, keeping the raw text of invalid structured output. */
export function errorItem<T>(id: string, parentIds: readonly string[], error: IterAlignError): StageItem<T> {
  return { status: "error", id, parentIds: [...parentIds], error: toStageItemError(error) };
}

/** The serialisable summary of an IterAlignError. */
export function toStageItemError(error: IterAlignError): StageItemError {
  const base = { code: error.code, message: error.message };
  return error instanceof OutputInvalidError ? { ...base, rawText: error.rawText } : base;
}

/** Where an item's work is attributed when it fails. */
export interface ItemContext {
  readonly id: string;
  readonly parentIds: readonly string[];
  /** The stage's abort signal: once it fired, errors abort the stage instead of becoming rows. */
  readonly signal?: AbortSignal;
  /** Called once the item is settled (ok or error row): per-item progress. */
  readonly onSettled?: () => void;
}

/**
 * Runs one item's model work. An IterAlignError becomes an error row; anything else (a programming error) and
 * any error after the caller aborted is rethrown, because neither is a property of this one item.
 */
export async function settleItem<T>(context: ItemContext, run: () => Promise<T>): Promise<StageItem<T>> {
  let item: StageItem<T>;
  try {
    item = okItem(await run());
  } catch (error) {
    if (context.signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
    item = errorItem(context.id, context.parentIds, error);
  }
  context.onSettled?.();
  return item;
}

/** The records of the ok items, in order. */
export function okRecords<T>(items: readonly StageItem<T>[]): T[] {
  const records: T[] = [];
  for (const item of items) if (item.status === "ok") records.push(item.record);
  return records;
}

/** The error rows, in order. */
export function errorRows<T>(items: readonly StageItem<T>[]): StageErrorItem[] {
  const rows: StageErrorItem[] = [];
  for (const item of items) if (item.status === "error") rows.push(item);
  return rows;
}
