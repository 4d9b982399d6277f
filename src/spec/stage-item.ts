import type { ErrorCode } from "./errors.js";

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
