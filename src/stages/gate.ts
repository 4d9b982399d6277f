import { z } from "zod";
import { judgeMessages } from "../prompts/judge.js";
import { IterAlignError } from "../spec/errors.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import { JudgeOutputSchema, type Attempt, type GateDecision, type Revision, type Verdict } from "../spec/records.js";
import { promptHash, recordId } from "./ids.js";
import { DEFAULT_JUDGE_PARAMS } from "./judge.js";
import { settleItem, type StageItemError } from "./stage-item.js";

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

/**
 * The gate's result for one revision. `decision` is always there (a judge failure is a rejection with
 * reason `judge-error`, so it can never slip into training data); `verdict` is the gate judge's verdict when
 * the call succeeded; `error` says why it did not.
 */
export interface GateOutcome {
  readonly decision: GateDecision;
  readonly verdict: Verdict | null;
  /** Whether the judge called the revision a refusal; null on judge error. */
  readonly refusal: boolean | null;
  readonly error: StageItemError | null;
}

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

/**
 * Stage 5: re-judges each revision with the full judge prompt on the ORIGINAL prompt (never the one with
 * constitutions). Ids: verdict `it<n>:gate-verdict:<promptId>` (parent: the revision), decision
 * `it<n>:gate:<promptId>` (parents: the revision and, when there is one, the verdict).
 */
export async function gate(items: readonly GateItem[], options: GateOptions): Promise<GateOutcome[]> {
  const { judge, iteration, signal } = options;
  const params = options.params ?? DEFAULT_JUDGE_PARAMS;
  for (const { revision, attempt } of items) {
    if (revision.attemptId !== attempt.id) {
      throw new IterAlignError("USAGE", `gate: revision ${revision.id} revises ${revision.attemptId}, not ${attempt.id}`);
    }
  }
  return Promise.all(
    items.map(async ({ revision, attempt }): Promise<GateOutcome> => {
      const verdictId = recordId(iteration, "gate-verdict", attempt.promptId);
      const decisionId = recordId(iteration, "gate", attempt.promptId);
      const messages = judgeMessages({ prompt: attempt.prompt, response: revision.revised }, { askRefusal: true });
      const hash = promptHash(messages);
      const provenance = { iteration, model: judge.modelId, promptHash: hash };
      const item = await settleItem({ id: verdictId, parentIds: [revision.id], signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async () => {
        const result = await judge.generateObject({ ...params, messages, signal, schema: GateJudgeSchema, schemaName: "gate_verdict" });
        return result.object;
      });
      const decisionBase = { ...provenance, id: decisionId, revisionId: revision.id };
      if (item.status === "error") {
        return {
          decision: { ...decisionBase, parentIds: [revision.id], accepted: false, reason: "judge-error" },
          verdict: null,
          refusal: null,
          error: item.error,
        };
      }
      const { refusal, promptBenign, ...verdictOutput } = item.record;
      const verdict: Verdict = {
        ...provenance,
        id: verdictId,
        parentIds: [revision.id],
        subjectId: revision.id,
        preset: "full",
        verdict: verdictOutput,
        promptBenign,
      };
      const decision: GateDecision = { ...decisionBase, parentIds: [revision.id, verdictId], ...decideGate(item.record) };
      return { decision, verdict, refusal, error: null };
    }),
  );
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
