import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { targetMessages } from "../prompts/target.js";
import type { Attempt } from "../spec/records.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import { promptHash, recordId } from "./ids.js";
import { settleItem, type StageItem } from "./stage-item.js";

/** The paper's decoding for red-teaming: greedy, at most 500 new tokens, frequency penalty 0.5. */
export const PAPER_RED_TEAM_PARAMS: Readonly<GenerationParams> = Object.freeze({
  temperature: 0,
  maxTokens: 500,
  frequencyPenalty: 0.5,
});

/** Dependencies of {@link redTeam}. */
export interface RedTeamOptions {
  readonly target: LanguageModel;
  readonly iteration: number;
  /** Decoding settings; default {@link PAPER_RED_TEAM_PARAMS}. */
  readonly params?: GenerationParams;
  readonly signal?: AbortSignal;
  /** Called as each item settles (per-item progress). */
  readonly onItem?: () => void;
}

/**
 * Stage 1: the target answers each red-team prompt of the batch. All prompts are started at once so the
 * engine (or the concurrency middleware) can batch them. Attempt ids are `it<n>:attempt:<promptId>`; a failed
 * call becomes an error row in the prompt's place.
 */
export async function redTeam(prompts: readonly RedTeamPrompt[], options: RedTeamOptions): Promise<StageItem<Attempt>[]> {
  const { target, iteration, signal } = options;
  const params = options.params ?? PAPER_RED_TEAM_PARAMS;
  return Promise.all(
    prompts.map((prompt) => {
      const id = recordId(iteration, "attempt", prompt.id);
      const parentIds = [prompt.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Attempt> => {
        const messages = targetMessages(prompt.text);
        const result = await target.generate({ ...params, messages, signal });
        return {
          id,
          iteration,
          parentIds,
          model: target.modelId,
          promptHash: promptHash(messages),
          promptId: prompt.id,
          ...(prompt.category !== null ? { category: prompt.category } : {}),
          prompt: prompt.text,
          response: result.text,
          finishReason: result.finishReason,
        };
      });
    }),
  );
}
