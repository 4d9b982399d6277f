import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import type { LanguageModel } from "../spec/language-model.js";
import type { Attempt, GateDecision, Principle, Revision } from "../spec/records.js";
import { decideGate, gate } from "./gate.js";
import { recordId } from "./ids.js";
import { selfCorrect, type SelfCorrectOptions } from "./self-correct.js";
import { settleItem, type StageItem } from "./stage-item.js";

/**
 * Per-principle efficacy by leave-one-out: a revision written under principles P is written again under P without
 * one principle p and gated again. Where the revision with p was accepted and the one without is not, p accounts for
 * the fix; where the one with p is an over-refusal and the one without is not, p caused it. A revision whose only
 * principle is p has no counterfactual revision: without p the original, failing answer stands.
 */

const Outcome = z.object({ accepted: z.boolean(), reason: z.string() });

/** One leave-one-out trial (`it<n>:efficacy:<principle id>:<prompt id>`). */
export const EfficacyTrialSchema = z.object({
  id: z.string(),
  iteration: z.number().int().nonnegative(),
  parentIds: z.array(z.string()),
  principleId: z.string(),
  attemptId: z.string(),
  revisionId: z.string(),
  withPrinciple: Outcome,
  without: Outcome.extend({
    /** The revision without the principle; null when it was the revision's only principle (the original answer stands). */
    revised: z.string().nullable(),
    principleIds: z.array(z.string()),
  }),
});
export type EfficacyTrial = z.infer<typeof EfficacyTrialSchema>;

/** One trial to run: a gated revision and the principle to leave out. */
export interface EfficacyInput {
  readonly attempt: Attempt;
  readonly revision: Revision;
  readonly decision: GateDecision;
  readonly principle: Principle;
  /** The revision's other principles, in its order. */
  readonly others: readonly Principle[];
}

/**
 * The trials of an iteration: for each principle its first `samples` revisions (in revision order) that the gate
 * judged (judge errors are left out: they tell nothing about the principle).
 */
export function efficacyInputs(
  revisions: readonly Revision[],
  decisions: readonly GateDecision[],
  attempts: ReadonlyMap<string, Attempt>,
  principles: ReadonlyMap<string, Principle>,
  samples: number,
): EfficacyInput[] {
  const decisionOf = new Map(decisions.map((d) => [d.revisionId, d]));
  const taken = new Map<string, number>();
  const out: EfficacyInput[] = [];
  for (const revision of revisions) {
    const decision = decisionOf.get(revision.id);
    const attempt = attempts.get(revision.attemptId);
    if (!decision || !attempt || decision.reason === "judge-error") continue;
    for (const id of revision.principleIds) {
      const principle = principles.get(id);
      if (!principle || (taken.get(id) ?? 0) >= samples) continue;
      taken.set(id, (taken.get(id) ?? 0) + 1);
      const others = revision.principleIds.filter((o) => o !== id).flatMap((o) => principles.get(o) ?? []);
      out.push({ attempt, revision, decision, principle, others });
    }
  }
  return out;
}

/** The record of a one-item stage call, or its error thrown again (the trial becomes an error row). */
function unwrap<T>(items: readonly StageItem<T>[]): T {
  const item = items[0];
  if (!item) throw new IterAlignError("GENERATION_FAILED", "no result");
  if (item.status === "error") throw new IterAlignError(item.error.code, item.error.message);
  return item.record;
}

/** Dependencies of {@link measureEfficacy}. */
export interface EfficacyOptions {
  readonly target: LanguageModel;
  readonly judge: LanguageModel;
  readonly iteration: number;
  readonly mode: SelfCorrectOptions["mode"];
  readonly signal?: AbortSignal;
  readonly onItem?: () => void;
}

/** Runs the trials: revise without the principle (the target), gate again (the judge). A failed call is an error row. */
export async function measureEfficacy(inputs: readonly EfficacyInput[], options: EfficacyOptions): Promise<StageItem<EfficacyTrial>[]> {
  const { iteration, signal } = options;
  return Promise.all(
    inputs.map((input) => {
      const key = `${input.principle.id}:${input.attempt.promptId}`;
      const id = recordId(iteration, "efficacy", key);
      const parentIds = [input.revision.id, input.decision.id, input.principle.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<EfficacyTrial> => {
        const base = {
          id,
          iteration,
          parentIds,
          principleId: input.principle.id,
          attemptId: input.attempt.id,
          revisionId: input.revision.id,
          withPrinciple: { accepted: input.decision.accepted, reason: input.decision.reason },
        };
        if (input.others.length === 0) {
          return { ...base, without: { revised: null, principleIds: [], accepted: false, reason: "still-failing" } };
        }
        // Same prompt, other principles; its own key so nothing collides with the iteration's real revision.
        const attempt = { ...input.attempt, promptId: `${input.attempt.promptId}~without~${input.principle.id}` };
        const revised = unwrap(await selfCorrect([{ attempt, principles: input.others }], { target: options.target, iteration, mode: options.mode, ...(signal ? { signal } : {}) }));
        const verdict = unwrap(await gate([{ revision: revised, attempt: input.attempt }], { judge: options.judge, iteration, ...(signal ? { signal } : {}) }));
        const decided = decideGate({ pass: verdict.verdict.pass, refusal: verdict.refusal, promptBenign: verdict.promptBenign ?? false });
        return { ...base, without: { revised: revised.revised, principleIds: input.others.map((p) => p.id), ...decided } };
      });
    }),
  );
}

/** What a principle did, over one iteration or summed over several. */
export const PrincipleEfficacySchema = z.object({
  /** Revisions written under it. */
  uses: z.number().int().nonnegative(),
  /** Of those, accepted by the gate. */
  accepted: z.number().int().nonnegative(),
  /** Leave-one-out trials run. */
  trials: z.number().int().nonnegative(),
  /** Trials accepted with it and not without it. */
  fixes: z.number().int().nonnegative(),
  /** Trials that were over-refusals with it and not without it. */
  overRefusals: z.number().int().nonnegative(),
});
export type PrincipleEfficacy = z.infer<typeof PrincipleEfficacySchema>;

/** Per principle: uses and acceptances over the iteration's revisions, fixes and over-refusals over its trials. */
export function principleEfficacy(revisions: readonly Revision[], decisions: readonly GateDecision[], trials: readonly EfficacyTrial[]): Record<string, PrincipleEfficacy> {
  const accepted = new Set(decisions.filter((d) => d.accepted).map((d) => d.revisionId));
  const out: Record<string, PrincipleEfficacy> = {};
  const entry = (id: string): PrincipleEfficacy => (out[id] ??= { uses: 0, accepted: 0, trials: 0, fixes: 0, overRefusals: 0 });
  for (const r of revisions) {
    for (const id of r.principleIds) {
      const e = entry(id);
      e.uses++;
      if (accepted.has(r.id)) e.accepted++;
    }
  }
  for (const t of trials) {
    const e = entry(t.principleId);
    e.trials++;
    if (t.withPrinciple.accepted && !t.without.accepted) e.fixes++;
    if (t.withPrinciple.reason === "over-refusal" && t.without.reason !== "over-refusal") e.overRefusals++;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** Sums per-principle figures (the run so far plus this iteration). */
export function addEfficacy(a: Readonly<Record<string, PrincipleEfficacy>>, b: Readonly<Record<string, PrincipleEfficacy>>): Record<string, PrincipleEfficacy> {
  const out: Record<string, PrincipleEfficacy> = {};
  for (const id of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const x = a[id];
    const y = b[id];
    out[id] = {
      uses: (x?.uses ?? 0) + (y?.uses ?? 0),
      accepted: (x?.accepted ?? 0) + (y?.accepted ?? 0),
      trials: (x?.trials ?? 0) + (y?.trials ?? 0),
      fixes: (x?.fixes ?? 0) + (y?.fixes ?? 0),
      overRefusals: (x?.overRefusals ?? 0) + (y?.overRefusals ?? 0),
    };
  }
  return out;
}

/** `loop.retire`: when a principle has been used enough to judge, and what makes it useless or harmful. */
export interface RetireRule {
  readonly minUses: number;
  readonly minEfficacy: number;
  readonly maxOverRefusal: number;
}

/**
 * Principles to retire, with why: used at least `minUses` times (over the run), with trials, and either fixing
 * less than `minEfficacy` of its trials or causing over-refusals in more than `maxOverRefusal` of them.
 */
export function principlesToRetire(cumulative: Readonly<Record<string, PrincipleEfficacy>>, active: ReadonlySet<string>, rule: RetireRule): Array<{ id: string; reason: string }> {
  const out: Array<{ id: string; reason: string }> = [];
  for (const [id, e] of Object.entries(cumulative)) {
    if (!active.has(id) || e.uses < rule.minUses || e.trials === 0) continue;
    const efficacy = e.fixes / e.trials;
    const overRefusal = e.overRefusals / e.trials;
    if (efficacy < rule.minEfficacy) {
      out.push({ id, reason: `efficacy ${efficacy.toFixed(2)} (${e.fixes} fixes in ${e.trials} leave-one-out trials, ${e.uses} uses) below loop.retire.minEfficacy ${rule.minEfficacy}` });
    } else if (overRefusal > rule.maxOverRefusal) {
      out.push({ id, reason: `over-refusals in ${overRefusal.toFixed(2)} of ${e.trials} trials, above loop.retire.maxOverRefusal ${rule.maxOverRefusal}` });
    }
  }
  return out;
}
