import type { TrainInput } from "../spec/trainer.js";

/**
 * What a user's training command is told, by placeholder name (`{sft_trl}` in an argv array) and environment
 * variable (`ITERALIGN_SFT_TRL`, always set). Every value is a path, an id or a number chosen by iteralign or
 * the user's config; model output (the examples' text) only ever travels inside the files.
 */
export const COMMAND_PLACEHOLDERS = {
  iteration: { env: "ITERALIGN_ITERATION", doc: "iteration number (0, 1, ...)" },
  run_id: { env: "ITERALIGN_RUN_ID", doc: "run id" },
  sft_sharegpt: { env: "ITERALIGN_SFT_SHAREGPT", doc: "SFT data, FastChat/ShareGPT JSON (one array)" },
  sft_trl: { env: "ITERALIGN_SFT_TRL", doc: "SFT data, TRL `messages` JSONL" },
  sft_openai: { env: "ITERALIGN_SFT_OPENAI", doc: "SFT data, OpenAI chat fine-tuning JSONL" },
  pref_trl: { env: "ITERALIGN_PREF_TRL", doc: "preference data, TRL `prompt/chosen/rejected` JSONL" },
  pref_openai: { env: "ITERALIGN_PREF_OPENAI", doc: "preference data, OpenAI DPO JSONL" },
  base_model: { env: "ITERALIGN_BASE_MODEL", doc: "the config's target: GGUF path (llama-cpp) or model id" },
  base_provider: { env: "ITERALIGN_BASE_PROVIDER", doc: "`llama-cpp` or `openai-compatible`" },
  current_model: { env: "ITERALIGN_CURRENT_MODEL", doc: "the model this iteration red-teamed (previous result or the base)" },
  current_provider: { env: "ITERALIGN_CURRENT_PROVIDER", doc: "`llama-cpp` or `openai-compatible`" },
  examples: { env: "ITERALIGN_EXAMPLES", doc: "number of this iteration's SFT examples" },
  output_dir: { env: "ITERALIGN_OUTPUT_DIR", doc: "directory for the command's outputs (exists, kept with the run)" },
  result_file: { env: "ITERALIGN_RESULT_FILE", doc: "where the command must write its result JSON" },
} as const;
export type PlaceholderName = keyof typeof COMMAND_PLACEHOLDERS;

/** Every placeholder's value for one training call. */
export function placeholderValues(input: TrainInput, resultFile: string): Record<PlaceholderName, string> {
  return {
    iteration: String(input.iteration),
    run_id: input.runId,
    sft_sharegpt: input.files.sharegpt,
    sft_trl: input.files.trlSft,
    sft_openai: input.files.openaiChat,
    pref_trl: input.files.trlPreference,
    pref_openai: input.files.openaiPreference,
    base_model: input.base.model,
    base_provider: input.base.provider,
    current_model: input.current.model,
    current_provider: input.current.provider,
    examples: String(input.examples.length),
    output_dir: input.outDir,
    result_file: resultFile,
  };
}

/** The `ITERALIGN_*` environment of the command. */
export function placeholderEnv(values: Record<PlaceholderName, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, spec] of Object.entries(COMMAND_PLACEHOLDERS)) env[spec.env] = values[name as PlaceholderName];
  return env;
}

const PLACEHOLDER = /\{([a-z_]+)\}/g;

/**
 * Replaces `{name}` in one argv element with its value, in a single pass: a value that itself contains
 * `{...}` is never expanded again. Unknown names stay as written (a Python format string in `-c` code, say).
 * The result is one argv element handed to execve, never parsed by a shell.
 */
export function substituteArgument(arg: string, values: Record<PlaceholderName, string>): string {
  return arg.replace(PLACEHOLDER, (whole, name: string) => (isPlaceholder(name) ? values[name] : whole));
}

/** Known placeholders written as `{name}` in `text`. */
export function placeholdersIn(text: string): PlaceholderName[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1] ?? "").filter(isPlaceholder);
}

function isPlaceholder(name: string): name is PlaceholderName {
  return Object.hasOwn(COMMAND_PLACEHOLDERS, name);
}
