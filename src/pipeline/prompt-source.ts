import type { DataConfigSchema } from "../config/config-schema.js";
import { loadBundled } from "../datasets/bundled.js";
import { withChainOfUtterances } from "../datasets/chain-of-utterances.js";
import { loadUserDataset } from "../datasets/mapping.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { splitPrompts, type PromptSplit } from "../datasets/split.js";
import type { z } from "zod";

/** The loop's prompts: the train split (in split order, CoU-wrapped if asked) and the split's manifest. */
export interface LoopPrompts {
  readonly train: readonly RedTeamPrompt[];
  readonly heldout: readonly RedTeamPrompt[];
  readonly manifest: PromptSplit["manifest"];
}

/**
 * Loads every configured red-team set, splits them deterministically into train and heldout (a prompt
 * never lands in both), and wraps them in Chain-of-Utterances when configured. Splitting happens before
 * wrapping so the split depends on the questions alone.
 */
export async function loadLoopPrompts(data: z.infer<typeof DataConfigSchema>, baseDir: string): Promise<LoopPrompts> {
  const all: RedTeamPrompt[] = [];
  for (const ref of data.redTeam) {
    if ("bundled" in ref) all.push(...(await loadBundled(ref.bundled, { includeContextual: ref.includeContextual })));
    else all.push(...(await loadUserDataset(ref, { baseDir })));
  }
  const split = splitPrompts(all, { heldoutFraction: data.heldoutFraction, seed: data.seed });
  const wrap = (prompts: readonly RedTeamPrompt[]): RedTeamPrompt[] =>
    data.chainOfUtterances ? prompts.map(withChainOfUtterances) : [...prompts];
  const train = wrap(data.limit === undefined ? split.train : split.train.slice(0, data.limit));
  return { train, heldout: wrap(split.heldout), manifest: split.manifest };
}
