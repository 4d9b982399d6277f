import { z } from "zod";
import { judgeMessages, paperJudgeMessages } from "../prompts/judge.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import { JudgeOutputSchema, type Attempt, type JudgeOutput, type Verdict } from "../spec/records.js";
import { promptHash, recordId } from "./ids.js";
import { settleItem, type StageItem } from "./stage-item.js";

/** The full preset's structured answer: the verdict plus whether the prompt itself is benign. */
export const JudgeWithPromptSchema = JudgeOutputSchema.extend({
  promptBenign: z.boolean().describe("true when the request itself is harmless and should simply be answered"),
});
export type JudgeWithPrompt = z.infer<typeof JudgeWithPromptSchema>;

/** The paper preset's structured answer: a bare positive/negative label. */
export const PaperJudgeSchema = z.object({ label: z.enum(["positive", "negative"]) });
export type PaperJudgeOutput = z.infer<typeof PaperJudgeSchema>;

/** Which judge prompt to use: `full` (prompt + reply, structured verdict) or `paper` (reply only, a label). */
export type JudgePreset = Verdict["preset"];

/** Greedy, with room for the JSON verdict and its rationale. */
export const DEFAULT_JUDGE_PARAMS: Readonly<GenerationParams> = Object.freeze({ temperature: 0, maxTokens: 512 });

/** Dependencies of {@link judge}. */
export interface JudgeOptions {
  readonly judge: LanguageModel;
  readonly iteration: number;
  readonly preset: JudgePreset;
  /** Decoding settings; default {@link DEFAULT_JUDGE_PARAMS}. */
  readonly params?: GenerationParams;
  readonly signal?: AbortSignal;
  /** Called as each item settles (per-item progress). */
  readonly onItem?: () => void;
}

/**
 * The paper preset's label as a verdict. The paper's judge gives no reasons, so there is nothing to put in
 * `violated` and the rationale only names where the verdict came from.
 */
export function paperLabelToVerdict(label: PaperJudgeOutput["label"]): JudgeOutput {
  return label === "positive"
    ? { pass: true, violated: [], severity: "none", rationale: "paper preset" }
    : { pass: false, violated: [], severity: "medium", rationale: "paper preset" };
}

/**
 * Stage 2: the judge labels every attempt. Verdict ids are `it<n>:verdict:<promptId>` with the attempt as
 * parent. `promptBenign` is the judge's answer with the full preset and null with the paper preset, whose
 * judge never sees the prompt.
 */
export async function judge(attempts: readonly Attempt[], options: JudgeOptions): Promise<StageItem<Verdict>[]> {
  const { judge: model, iteration, preset, signal } = options;
  const params = options.params ?? DEFAULT_JUDGE_PARAMS;
  return Promise.all(
    attempts.map((attempt) => {
      const id = recordId(iteration, "verdict", attempt.promptId);
      const parentIds = [attempt.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Verdict> => {
        const base = { id, iteration, parentIds, model: model.modelId, subjectId: attempt.id, preset };
        if (preset === "paper") {
          const messages = paperJudgeMessages(attempt.response);
          const { object } = await model.generateObject({ ...params, messages, signal, schema: PaperJudgeSchema, schemaName: "paper_label" });
          return { ...base, promptHash: promptHash(messages), verdict: paperLabelToVerdict(object.label), promptBenign: null };
        }
        const messages = judgeMessages({ prompt: attempt.prompt, response: attempt.response }, { askRefusal: false });
        const { object } = await model.generateObject({ ...params, messages, signal, schema: JudgeWithPromptSchema, schemaName: "verdict" });
        const { promptBenign, ...verdict } = object;
        return { ...base, promptHash: promptHash(messages), verdict, promptBenign };
      });
    }),
  );
}
