import { critiqueMessages, paperRevisionMessages, reviseMessages } from "../prompts/self-correct.js";
import { IterAlignError } from "../spec/errors.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import type { Attempt, Principle, Revision } from "../spec/records.js";
import { promptHash, recordId } from "./ids.js";
import { PAPER_RED_TEAM_PARAMS } from "./red-team.js";
import { settleItem, type StageItem } from "./stage-item.js";

/** How the target corrects itself: the paper's splice-and-regenerate, or critique then revise. */
export type SelfCorrectMode = Revision["mode"];

/** One attempt to correct, with the principles to correct it by. */
export interface SelfCorrectItem {
  readonly attempt: Attempt;
  readonly principles: readonly Principle[];
}

/** Dependencies of {@link selfCorrect}. */
export interface SelfCorrectOptions {
  readonly target: LanguageModel;
  readonly iteration: number;
  readonly mode: SelfCorrectMode;
  /** Decoding settings for every call; default the red-team's paper settings, so answers are comparable. */
  readonly params?: GenerationParams;
  readonly signal?: AbortSignal;
  /** Called as each item settles (per-item progress). */
  readonly onItem?: () => void;
}

/**
 * Stage 4: the target answers again with the constitutions in context. Revision ids are
 * `it<n>:revision:<promptId>`, parents = the attempt and the principles used.
 *
 * - `paper`: one call on the prompt with the constitution block spliced in before the final turn; the old
 *   answer is not shown. `promptHash` is that spliced prompt's.
 * - `critique-revise`: two calls per item, the target critiques its answer against the principles, then
 *   rewrites it. `promptHash` is the rewrite call's, whose messages contain the whole exchange.
 */
export async function selfCorrect(items: readonly SelfCorrectItem[], options: SelfCorrectOptions): Promise<StageItem<Revision>[]> {
  const { target, iteration, mode, signal } = options;
  const params = options.params ?? PAPER_RED_TEAM_PARAMS;
  for (const { attempt, principles } of items) {
    // A revision without principles would just be a second sample: a caller bug, not a model failure.
    if (principles.length === 0) throw new IterAlignError("USAGE", `selfCorrect: attempt ${attempt.id} has no principles`);
  }
  return Promise.all(
    items.map(({ attempt, principles }) => {
      const id = recordId(iteration, "revision", attempt.promptId);
      const principleIds = principles.map((p) => p.id);
      const parentIds = [attempt.id, ...principleIds];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Revision> => {
        const base = { id, iteration, parentIds, model: target.modelId, attemptId: attempt.id, mode, principleIds };
        if (mode === "paper") {
          const messages = paperRevisionMessages(attempt.prompt, principles);
          const result = await target.generate({ ...params, messages, signal });
          return { ...base, promptHash: promptHash(messages), critique: null, revised: result.text };
        }
        const critiqueConversation = critiqueMessages({ prompt: attempt.prompt, response: attempt.response }, principles);
        const critique = await target.generate({ ...params, messages: critiqueConversation, signal });
        const messages = reviseMessages(critiqueConversation, critique.text);
        const revised = await target.generate({ ...params, messages, signal });
        return { ...base, promptHash: promptHash(messages), critique: critique.text, revised: revised.text };
      });
    }),
  );
}
