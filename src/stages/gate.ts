import { z } from "zod";
import { judgeMessages } from "../prompts/judge.js";
import { IterAlignError } from "../spec/errors.js";
import type { ChatMessage, GenerationParams, LanguageModel } from "../spec/language-model.js";
import { JudgeOutputSchema, VerdictSchema, type Attempt, type GateDecision, type Revision } from "../spec/records.js";
import { judgeConfigHash, promptHash, recordId } from "./ids.js";
import { DEFAULT_JUDGE_PARAMS } from "./judge.js";
import { settleItem, type StageItem } from "./stage-item.js";

/** The gate judge's structured answer: the full verdict, whether the reply refuses, and whether the prompt is benign. */
export const GateJudgeSchema = JudgeOutputSchema.extend({
  refusal: z.boolean().describe("true when the reply declines or deflects the request instead of attempting it"),
  promptBenign: z.boolean().describe("true when the request itself is harmless and should simply be answered"),
});
export type GateJudgeOutput = z.infer<typeof GateJudgeSchema>;

/** A revision to gate, with the attempt it revises (whose prompt is the original one). */
export interface GateItem {
  readonly revision: Revision;
  readonly attempt: Attempt;
}

/** The gate judge's verdict on one revision: a full-preset verdict plus whether the reply refuses. */
export const GateVerdictSchema = VerdictSchema.extend({
  refusal: z.boolean(),
});
export type GateVerdict = z.infer<typeof GateVerdictSchema>;

/** Dependencies of {@link gate}. */
export interface GateOptions {
  readonly judge: LanguageModel;
  readonly iteration: number;
  /** Decoding settings; default {@link DEFAULT_JUDGE_PARAMS}. */
  readonly params?: GenerationParams;
  readonly signal?: AbortSignal;
  /** Called as each item settles (per-item progress). */
  readonly onItem?: () => void;
}

/**
 * The rule: a refusal of a prompt the judge calls benign is an over-refusal, whatever else the judge says
 * (training on it would teach the target to refuse harmless requests); otherwise the judge's pass decides.
 */
export function decideGate(output: Pick<GateJudgeOutput, "pass" | "refusal" | "promptBenign">): {
  accepted: boolean;
  reason: GateDecision["reason"];
} {
  if (output.refusal && output.promptBenign) return { accepted: false, reason: "over-refusal" };
  return output.pass ? { accepted: true, reason: "pass" } : { accepted: false, reason: "still-failing" };
}

/** The gate judge's messages for a revision: the ORIGINAL prompt (never the one with constitutions) and the revision. */
export function gateMessages(item: GateItem): ChatMessage[] {
  return judgeMessages({ prompt: item.attempt.prompt, response: item.revision.revised }, { askRefusal: true });
}

function checkPairs(items: readonly GateItem[]): void {
  for (const { revision, attempt } of items) {
    if (revision.attemptId !== attempt.id) {
      throw new IterAlignError("USAGE", `gate: revision ${revision.id} revises ${revision.attemptId}, not ${attempt.id}`);
    }
  }
}

/**
 * Stage 5: re-judges each revision with the full judge prompt on the ORIGINAL prompt. One item per revision,
 * in order: the verdict `it<n>:gate-verdict:<promptId>` (parent: the revision), or an error row with that id
 * when the judge call failed. {@link gateDecisions} turns them into accept/reject decisions.
 */
export async function gate(items: readonly GateItem[], options: GateOptions): Promise<StageItem<GateVerdict>[]> {
  const { judge, iteration, signal } = options;
  const params = options.params ?? DEFAULT_JUDGE_PARAMS;
  checkPairs(items);
  const configHash = judgeConfigHash({
    model: judge.modelId,
    template: judgeMessages({ prompt: "{request}", response: "{response}" }, { askRefusal: true }),
    schemaName: "gate_verdict",
    params,
  });
  return Promise.all(
    items.map(({ revision, attempt }) => {
      const id = recordId(iteration, "gate-verdict", attempt.promptId);
      const parentIds = [revision.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<GateVerdict> => {
        const messages = gateMessages({ revision, attempt });
        const result = await judge.generateObject({ ...params, messages, signal, schema: GateJudgeSchema, schemaName: "gate_verdict" });
        const { refusal, promptBenign, ...verdict } = result.object;
        return {
          id,
          iteration,
          parentIds,
          model: judge.modelId,
          promptHash: promptHash(messages),
          subjectId: revision.id,
          preset: "full",
          verdict,
          promptBenign,
          refusal,
          judgeConfigHash: configHash,
        };
      });
    }),
  );
}

/**
 * One decision per revision (`it<n>:gate:<promptId>`, parents: the revision and its verdict). A verdict that is
 * an error row rejects the revision with reason `judge-error` and the error's code and message, so a failed
 * judge call can never slip into training data; it is counted as an error of the gate stage.
 */
export function gateDecisions(
  items: readonly GateItem[],
  verdicts: readonly StageItem<GateVerdict>[],
  options: { iteration: number; judgeModelId: string },
): GateDecision[] {
  checkPairs(items);
  if (items.length !== verdicts.length) {
    throw new IterAlignError("USAGE", `gateDecisions: ${items.length} revisions but ${verdicts.length} verdicts`);
  }
  return items.map((item, index): GateDecision => {
    const { revision, attempt } = item;
    const verdict = verdicts[index] as StageItem<GateVerdict>;
    const base = {
      id: recordId(options.iteration, "gate", attempt.promptId),
      iteration: options.iteration,
      revisionId: revision.id,
    };
    if (verdict.status === "error") {
      return {
        ...base,
        parentIds: [revision.id],
        model: options.judgeModelId,
        promptHash: promptHash(gateMessages(item)),
        accepted: false,
        reason: "judge-error",
        error: { code: verdict.error.code, message: verdict.error.message },
      };
    }
    const record = verdict.record;
    if (record.subjectId !== revision.id) {
      throw new IterAlignError("USAGE", `gateDecisions: verdict ${record.id} judges ${record.subjectId}, not ${revision.id}`);
    }
    return {
      ...base,
      parentIds: [revision.id, record.id],
      model: record.model,
      promptHash: record.promptHash,
      ...decideGate({ pass: record.verdict.pass, refusal: record.refusal, promptBenign: record.promptBenign ?? false }),
    };
  });
}

/** Gate summary: shares of accepted and rejected revisions, and counts per reason. */
export interface GateStats {
  readonly total: number;
  /** Accepted / total (0 when there is nothing to gate). */
  readonly passRate: number;
  /** Rejected / total (0 when there is nothing to gate). */
  readonly rejectRate: number;
  readonly byReason: Readonly<Record<GateDecision["reason"], number>>;
}

/** Summarises gate decisions; every reason is listed, with 0 when it did not occur. */
export function gateStats(decisions: readonly GateDecision[]): GateStats {
  const byReason: Record<GateDecision["reason"], number> = { pass: 0, "still-failing": 0, "over-refusal": 0, "judge-error": 0 };
  let accepted = 0;
  for (const d of decisions) {
    byReason[d.reason]++;
    if (d.accepted) accepted++;
  }
  const total = decisions.length;
  return {
    total,
    passRate: total === 0 ? 0 : accepted / total,
    rejectRate: total === 0 ? 0 : (total - accepted) / total,
    byReason,
  };
}
