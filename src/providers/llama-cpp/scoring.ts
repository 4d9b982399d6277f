import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import type { ContinuationScore, ScoreRequest, ScoreResult } from "../../spec/language-model.js";

/** Context and continuation tokens, split the way lm-evaluation-harness splits them. */
export interface ScoringTokens {
  readonly context: Token[];
  readonly continuations: Token[][];
}

/**
 * Tokenizes a context and its continuations. Trailing whitespace of the context moves to the start of each
 * continuation, and a continuation is tokenized together with its context (then split at the context's token
 * count) so word-initial tokens are the ones the model would see; when joint tokenization changes the
 * context's tokens, the continuation is tokenized on its own.
 */
export function tokenizeForScoring(model: LlamaModel, request: Pick<ScoreRequest, "context" | "continuations" | "addBos">): ScoringTokens {
  const bos = request.addBos !== false && model.tokens.shouldPrependBosToken && model.tokens.bos !== null ? [model.tokens.bos] : [];
  const tokens = tokenizeAfter(model, bos, request);
  if (tokens.context.length === 0) throw new IterAlignError("USAGE", "scoreContinuations needs a non-empty context");
  return tokens;
}

/**
 * Like {@link tokenizeForScoring}, after tokens already made (a rendered chat prompt): the context text and the
 * continuations are tokenized with the same whitespace and joint-tokenization rules, then appended to `head`.
 */
export function tokenizeAfter(model: LlamaModel, head: readonly Token[], request: Pick<ScoreRequest, "context" | "continuations">): ScoringTokens {
  const trimmed = request.context.replace(/\s+$/, "");
  const moved = request.context.slice(trimmed.length);
  const own = model.tokenize(trimmed, false);
  const context = [...head, ...own];
  const continuations = request.continuations.map((text, i) => {
    const full = moved + text;
    if (full.length === 0) throw new IterAlignError("USAGE", `continuation ${i} is empty`);
    if (own.length === 0) return model.tokenize(full, false);
    const whole = model.tokenize(trimmed + full, false);
    const samePrefix = whole.length > own.length && own.every((t, j) => whole[j] === t);
    return samePrefix ? whole.slice(own.length) : model.tokenize(full, false);
  });
  return { context, continuations };
}

function logprobOf(probabilities: Map<Token, number> | undefined, token: Token): { logprob: number; greedy: boolean } {
  if (!probabilities) throw new IterAlignError("GENERATION_FAILED", "the engine returned no probabilities");
  const p = probabilities.get(token) ?? 0;
  let best = -1;
  let bestToken: Token | undefined;
  for (const [t, q] of probabilities) {
    if (q > best) {
      best = q;
      bestToken = t;
    }
  }
  return { logprob: Math.log(p), greedy: bestToken === token };
}

/**
 * Scores continuations with one evaluation of the shared context: the context's KV cache stays in the
 * sequence, each continuation is evaluated after it and then erased, so the context is never re-evaluated.
 */
export async function scoreWithSharedContext(
  seq: LlamaContextSequence,
  tokens: ScoringTokens,
  signal?: AbortSignal,
): Promise<ScoreResult> {
  const { context, continuations } = tokens;
  const longest = Math.max(...continuations.map((c) => c.length));
  if (context.length + longest > seq.contextSize) {
    throw new IterAlignError(
      "USAGE",
      `context (${context.length} tokens) plus the longest continuation (${longest}) exceed the context size ${seq.contextSize}`,
    );
  }
  const head = context.slice(0, -1);
  const last = context.at(-1) as Token;
  const ctxOut = await seq.controlledEvaluate([...head, [last, { generateNext: { probabilities: true } }]]);
  const afterContext = ctxOut.at(-1)?.next?.probabilities;
  let promptTokens = context.length;
  const scores: ContinuationScore[] = [];
  for (const cont of continuations) {
    if (signal?.aborted) throw new IterAlignError("ABORTED", "scoring aborted");
    const first = logprobOf(afterContext, cont[0] as Token);
    let logprob = first.logprob;
    let isGreedy = first.greedy;
    const inner = cont.slice(0, -1);
    if (inner.length > 0) {
      const out = await seq.controlledEvaluate(inner.map((t) => [t, { generateNext: { probabilities: true } }]));
      for (let i = 0; i < inner.length; i++) {
        const r = logprobOf(out[i]?.next?.probabilities, cont[i + 1] as Token);
        logprob += r.logprob;
        isGreedy &&= r.greedy;
      }
      await seq.eraseContextTokenRanges([{ start: context.length, end: context.length + inner.length }]);
      promptTokens += inner.length;
    }
    scores.push({ logprob, tokenCount: cont.length, isGreedy });
  }
  return { scores, usage: { promptTokens, completionTokens: 0 } };
}

/**
 * Reference computation for tests: evaluates context + continuation one token at a time in a cleared
 * sequence, reading the next-token distribution after each, with no KV reuse between continuations.
 */
export async function scoreTokenByToken(seq: LlamaContextSequence, tokens: ScoringTokens): Promise<ContinuationScore[]> {
  const { context, continuations } = tokens;
  const scores: ContinuationScore[] = [];
  for (const cont of continuations) {
    await seq.clearHistory();
    const all = [...context, ...cont];
    let logprob = 0;
    let isGreedy = true;
    for (let i = 0; i < all.length - 1; i++) {
      const out = await seq.controlledEvaluate([[all[i] as Token, { generateNext: { probabilities: true } }]]);
      if (i + 1 >= context.length) {
        const r = logprobOf(out[0]?.next?.probabilities, all[i + 1] as Token);
        logprob += r.logprob;
        isGreedy &&= r.greedy;
      }
    }
    scores.push({ logprob, tokenCount: cont.length, isGreedy });
  }
  return scores;
}
