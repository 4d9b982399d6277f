import { IterAlignError } from "../spec/errors.js";

/** Letters, digits, `-`, `_` and `.`, not starting with `.`, at most 128 characters. */
const RUN_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks a run id before it names anything: it becomes a directory under `runsDir`, so a path (`../x`, `/tmp/x`),
 * `.`/`..`, or a control character would put run files elsewhere. Throws USAGE (exit code 2) otherwise.
 */
export function validateRunId(id: string): string {
  if (!RUN_ID.test(id)) {
    throw new IterAlignError(
      "USAGE",
      `invalid run id ${JSON.stringify(id)}: use letters, digits, '-', '_' and '.', not starting with '.', at most 128 characters`,
      { details: { runId: id } },
    );
  }
  return id;
}
