import {
  LlamaGrammarEvaluationState,
  TokenBias,
  type EvaluationPriority,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import type { GenerateResult, GenerationParams } from "../../spec/language-model.js";
import { errorText } from "./engine.js";
import { memberPriority, type LockstepBarrier } from "./lockstep-barrier.js";

/** One generation on one sequence. */
export interface DecodeJob {
  readonly tokens: Token[];
  readonly stopTokens: ReadonlySet<Token>;
  readonly stopTexts: readonly string[];
  readonly maxTokens: number;
  readonly params: GenerationParams;
  readonly grammar: LlamaGrammar | undefined;
  readonly onText: ((text: string) => void) | undefined;
  readonly signal: AbortSignal | undefined;
  /** Set when the job decodes in lockstep with others (see LockstepBarrier). */
  readonly lockstep?: { readonly barrier: LockstepBarrier; readonly member: number };
  /** Prompt tokens already in the sequence (a prefix shared with the rest of the decode group). */
  readonly prefilled?: number;
  /** Prompt tokens this job did not evaluate itself (reported as cached prompt tokens). */
  readonly cachedPromptTokens?: number;
}

/**
 * Decodes one answer on a sequence: samples with the request's parameters (greedy at temperature 0),
 * applies OpenAI-style frequency/presence penalties over the generated tokens, stops at end-of-generation
 * tokens, the chat template's stop triggers, stop texts, a complete JSON value under a grammar, or maxTokens,
 * and streams text without splitting a UTF-8 character or emitting the start of a stop text.
 */
export async function decodeOnSequence(
  model: LlamaModel,
  seq: LlamaContextSequence,
  job: DecodeJob,
  modelId: string,
): Promise<GenerateResult> {
  const { params, lockstep } = job;
  const generated: Token[] = [];
  const grammarState = job.grammar ? new LlamaGrammarEvaluationState({ model, grammar: job.grammar }) : undefined;
  const penalize = (params.frequencyPenalty ?? 0) !== 0 || (params.presencePenalty ?? 0) !== 0;
  const bias = penalize ? new TokenBias(model.tokenizer) : undefined;
  const counts = new Map<Token, number>();
  const temperature = params.temperature ?? 0;
  let text = "";
  let emitted = 0;
  let finishReason: GenerateResult["finishReason"] = "length";
  try {
    if (lockstep) await lockstep.barrier.awaitPrefillTurn(lockstep.member);
    const prefilled = job.prefilled ?? 0;
    const iterator = seq.evaluate(prefilled > 0 ? job.tokens.slice(prefilled) : job.tokens, {
      temperature,
      ...(lockstep ? { evaluationPriority: memberPriority(lockstep.member) as EvaluationPriority } : {}),
      ...(temperature > 0 && params.topP !== undefined ? { topP: params.topP } : {}),
      ...(temperature > 0 && params.seed !== undefined ? { seed: params.seed } : {}),
      ...(grammarState ? { grammarEvaluationState: grammarState } : {}),
      // OpenAI-style penalties as a logit bias on the tokens generated so far: the same subtraction llama.cpp's
      // penalties sampler makes (logit - count * frequency - presence, exact in float), without its pass over
      // every candidate of the vocabulary at each token (15% of a red-team stage's time with a 152k vocabulary).
      ...(bias ? { tokenBias: () => bias } : {}),
    });
    for await (const token of iterator) {
      lockstep?.barrier.prefillDone(lockstep.member);
      if (job.signal?.aborted) throw new IterAlignError("ABORTED", `${modelId}: generation aborted`);
      if (job.stopTokens.has(token) || model.isEogToken(token)) {
        finishReason = "stop";
        break;
      }
      generated.push(token);
      if (bias) {
        const count = (counts.get(token) ?? 0) + 1;
        counts.set(token, count);
        // Float32 arithmetic, as llama.cpp computes it: count * frequency + presence.
        const f = Math.fround;
        bias.set(token, { logit: -f(f(count * f(params.frequencyPenalty ?? 0)) + f(params.presencePenalty ?? 0)) });
      }
      text = model.detokenize(generated);
      const stopAt = firstStop(text, job.stopTexts);
      if (stopAt >= 0) {
        text = text.slice(0, stopAt);
        finishReason = "stop";
        break;
      }
      if (grammarState && isCompleteJson(text)) {
        finishReason = "stop";
        break;
      }
      // Hold back a partial UTF-8 character and anything that may be the start of a stop text.
      const safeEnd = text.endsWith("\uFFFD") ? text.length - 1 : text.length - longestStopPrefix(text, job.stopTexts);
      if (job.onText && safeEnd > emitted) {
        job.onText(text.slice(emitted, safeEnd));
        emitted = safeEnd;
      }
      if (generated.length >= job.maxTokens) break;
      if (lockstep) await lockstep.barrier.arrive(lockstep.member);
    }
    if (finishReason === "length" && generated.length < job.maxTokens) finishReason = "stop";
  } catch (err) {
    if (err instanceof IterAlignError) throw err;
    throw new IterAlignError("GENERATION_FAILED", `${modelId}: generation failed: ${errorText(err)}`, { cause: err });
  } finally {
    if (lockstep) {
      lockstep.barrier.prefillDone(lockstep.member);
      lockstep.barrier.leave();
    }
  }
  if (job.onText && text.length > emitted) job.onText(text.slice(emitted));
  const cached = job.cachedPromptTokens ?? 0;
  return { text, finishReason, usage: { promptTokens: job.tokens.length, completionTokens: generated.length, ...(cached > 0 ? { cachedPromptTokens: cached } : {}) } };
}

/** Index of the first stop text in `text`, or -1. */
export function firstStop(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

function longestStopPrefix(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > longest; n--) {
      if (text.endsWith(s.slice(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

/** Once the text is a complete JSON object or array the grammar allows only whitespace: stop there. */
function isCompleteJson(text: string): boolean {
  const trimmed = text.trimEnd();
  const last = trimmed.at(-1);
  if (last !== "}" && last !== "]") return false;
  try {
    JSON.parse(trimmed);
    return true;
  } catch {
    return false;
  }
}
