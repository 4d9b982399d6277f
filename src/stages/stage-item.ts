import type { ErrorCode } from "../spec/errors.js";
import { IterAlignError, OutputInvalidError } from "../spec/errors.js";

/** Why one item of a stage failed: the error's code and message, and the model's raw text when it had one. */
export interface StageItemError {
  readonly code: ErrorCode;
  readonly message: string;
  /** The unparsed model output, for OUTPUT_INVALID / OUTPUT_TRUNCATED failures. */
  readonly rawText?: string;
}

/**
 * One output of a stage: either the record it produced, or an error row carrying the id the record would have
 * had. Stages return these in input order, so one bad model answer costs one item, never the whole batch.
 */
export type StageItem<T> =
  | { readonly status: "ok"; readonly record: T }
  | { readonly status: "error"; readonly id: string; readonly parentIds: readonly string[]; readonly error: StageItemError };

/** The error part of {@link StageItem}. */
export type StageErrorItem = Extract<StageItem<unknown>, { status: "error" }>;

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
