/** Machine-readable error codes. Every failure iteralign reports carries one. */
export type ErrorCode =
  | "CONFIG_INVALID"
  | "CONFIG_NOT_FOUND"
  | "MODEL_NOT_FOUND"
  | "MODEL_LOAD_FAILED"
  | "MODEL_INVALID"
  | "MODEL_DOWNLOAD_FAILED"
  | "CAPABILITY_MISSING"
  | "GENERATION_FAILED"
  | "OUTPUT_INVALID"
  | "OUTPUT_TRUNCATED"
  | "HTTP_UNREACHABLE"
  | "HTTP_STATUS"
  | "HTTP_BAD_RESPONSE"
  | "TIMEOUT"
  | "ABORTED"
  | "STORE_CONFLICT"
  | "STORE_NOT_FOUND"
  | "STORE_CORRUPT"
  | "STORE_FULL"
  | "STORE_READONLY"
  | "STORE_UNAVAILABLE"
  | "BUILD_TOOL_MISSING"
  | "TRAINER_ENVIRONMENT"
  | "BUILD_FAILED"
  | "DATA_INVALID"
  | "TRAINING_FAILED"
  | "STAGE_FAILED"
  | "ERROR_RATE_EXCEEDED"
  | "BUDGET_EXCEEDED"
  | "USAGE";

/** Error with a code, an optional cause and structured details. */
export class IterAlignError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  /** True when retrying the same call may succeed (network blips, 429, 5xx). */
  readonly retryable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "IterAlignError";
    this.code = code;
    this.details = options.details ?? {};
    this.retryable = options.retryable ?? false;
  }
}

/** A model's structured output did not match its schema; keeps the raw text. */
export class OutputInvalidError extends IterAlignError {
  readonly rawText: string;
  constructor(message: string, rawText: string, options: { cause?: unknown; truncated?: boolean } = {}) {
    super(options.truncated ? "OUTPUT_TRUNCATED" : "OUTPUT_INVALID", message, { cause: options.cause, details: { rawText } });
    this.name = "OutputInvalidError";
    this.rawText = rawText;
  }
}

export function isIterAlignError(e: unknown): e is IterAlignError {
  return e instanceof IterAlignError;
}

/**
 * Codes that mean the user's input is wrong (a config, a data file, a model file, an argument): the CLI
 * exits 2 for them, 1 for failures of the work itself.
 */
export const USER_INPUT_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "USAGE",
  "CONFIG_INVALID",
  "CONFIG_NOT_FOUND",
  "DATA_INVALID",
  "MODEL_NOT_FOUND",
  "MODEL_INVALID",
]);
