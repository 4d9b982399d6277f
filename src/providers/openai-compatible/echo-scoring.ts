import type { ContinuationScore } from "../../spec/language-model.js";
import type { CompletionLogprobs } from "./schemas.js";

/**
 * The prompt sent to score one continuation, and where the continuation starts in it.
 * Trailing whitespace of the context moves to the continuation (as lm-evaluation-harness and the
 * llama-cpp provider do), so a word-initial token such as " Paris" counts as continuation, not context.
 */
export interface EchoPrompt {
  readonly prompt: string;
  /** Offset of the continuation in `prompt`, in code points (the unit servers report `text_offset` in). */
  readonly start: number;
  /** Length of `prompt` in code points; tokens at or after it were generated, not echoed. */
  readonly end: number;
}

/** Builds the prompt for one continuation. */
export function echoPrompt(context: string, continuation: string): EchoPrompt {
  const trimmed = context.replace(/\s+$/, "");
  const prompt = context + continuation;
  // Python servers (vLLM, the OpenAI API) count offsets in code points, not UTF-16 units.
  return { prompt, start: codePoints(trimmed), end: codePoints(prompt) };
}

/** Why echoed logprobs could not be used. */
export type EchoProblem = "not-echoed" | "malformed";

/**
 * Sums the log-probabilities of the echoed tokens that start inside the continuation
 * (`start <= text_offset < end`). Tokens at or after `end` are the generated token(s) and are skipped.
 *
 * When no token starts inside the continuation (the tokenizer merged it into the context's last token),
 * the one token that spans the boundary is scored instead, so a non-empty continuation is never scored as
 * zero tokens. Returns a problem instead of a score when the response is not an echo of the prompt.
 */
export function scoreEcho(
  logprobs: CompletionLogprobs,
  at: EchoPrompt,
): { score: ContinuationScore; problem?: undefined } | { score?: undefined; problem: EchoProblem } {
  const { token_logprobs: values, text_offset: offsets, top_logprobs: tops } = logprobs;
  const n = offsets.length;
  if (values.length !== n || logprobs.tokens.length !== n) return { problem: "malformed" };
  // An echo starts at offset 0; a response without the prompt's tokens means the server ignored `echo`.
  if (n === 0 || offsets[0] !== 0) return { problem: "not-echoed" };
  let chosen: number[] = [];
  for (let i = 0; i < n; i++) {
    const offset = offsets[i] as number;
    if (offset >= at.start && offset < at.end) chosen.push(i);
  }
  if (chosen.length === 0 && at.end > at.start) {
    const spanning = lastIndexBefore(offsets, at.start);
    if (spanning >= 0) chosen = [spanning];
  }
  let logprob = 0;
  let isGreedy = true;
  for (const i of chosen) {
    const value = values[i];
    if (value === null || value === undefined) return { problem: "malformed" };
    logprob += value;
    isGreedy &&= isTopToken(value, tops?.[i]);
  }
  return { score: { logprob, tokenCount: chosen.length, isGreedy } };
}

/** With `logprobs: 1` the alternatives hold the argmax token; the chosen token is greedy when it is at least as likely. */
function isTopToken(value: number, alternatives: Readonly<Record<string, number>> | null | undefined): boolean {
  const candidates = alternatives ? Object.values(alternatives) : [];
  if (candidates.length === 0) return false;
  const best = Math.max(...candidates);
  // Servers round logprobs differently in the two fields; a tiny tolerance keeps ties greedy.
  return value >= best - 1e-6;
}

function lastIndexBefore(offsets: readonly number[], position: number): number {
  let found = -1;
  for (let i = 0; i < offsets.length; i++) if ((offsets[i] as number) < position) found = i;
  return found;
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
