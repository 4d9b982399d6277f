import { z } from "zod";
import { checkContamination, type EvalTextSet, type TextItem } from "../datasets/contamination.js";
import { judgeMessages } from "../prompts/judge.js";
import { attackerMessages, type AttackerBrief } from "../prompts/attacker.js";
import { IterAlignError } from "../spec/errors.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import { JudgeWithPromptSchema } from "../stages/judge.js";
import { sha256Hex } from "../util/canonical-json.js";

/**
 * Attack generation: the attacker model writes new red-team requests per category, few-shot from what got
 * through and what did not; each candidate is deduplicated against every prompt already used, every evaluation
 * set and the other candidates, then screened by the judge, which must find the request itself harmful
 * (`promptBenign: false`), so generated attacks really ask for harm. Every candidate keeps its provenance and
 * the reason it was accepted or dropped.
 */

/** The attacker's structured answer. */
export const AttackerOutputSchema = z.object({ requests: z.array(z.string().min(1)).min(1) });

/** A request the attacker wrote, with where it came from and what happened to it. */
export interface GeneratedAttack {
  /** `gen:<first 16 hex of sha256(text)>`. */
  readonly id: string;
  readonly text: string;
  readonly category: string;
  readonly iteration: number;
  readonly attackerModel: string;
  readonly strategy: "attacker";
  /** Ids of the examples the attacker was shown (the prompts that got through, then those that did not). */
  readonly parentIds: readonly string[];
  /** `accepted`, or why not: a duplicate (of what), benign by the judge's screen, or a screen error. */
  readonly status: "accepted" | "duplicate" | "benign" | "screen-error" | "attacker-error";
  readonly reason: string | null;
}

/** A category to write attacks for, with the examples to show. */
export interface AttackCategory {
  readonly category: string;
  readonly count: number;
  readonly succeeded: readonly TextItem[];
  readonly resisted: readonly TextItem[];
}

export interface GenerateAttacksOptions {
  readonly attacker: LanguageModel;
  /** Screens each candidate: is the request itself harmful? */
  readonly judge: LanguageModel;
  readonly iteration: number;
  /** Every prompt already used (train, held-out, earlier generated attacks): no candidate may repeat one. */
  readonly used: readonly TextItem[];
  /** The evaluation sets in use: no candidate may duplicate an item (exact, 13-gram or near duplicate). */
  readonly evalSets: readonly EvalTextSet[];
  /** Decoding of the attacker (default: temperature 0.9 with a seed per category, for variety that repeats). */
  readonly params?: GenerationParams;
  readonly seed?: number;
  readonly signal?: AbortSignal;
}

/** The id of a generated request. */
export function generatedAttackId(text: string): string {
  return `gen:${sha256Hex(text).slice(0, 16)}`;
}

/** The reply the screen pairs every candidate with: a refusal, so only the request is judged. */
const SCREEN_REPLY = "I can't help with that.";

/**
 * Writes, deduplicates and screens attacks for each category. Deterministic for a deterministic attacker and
 * judge: candidates are processed in the attacker's order, category by category.
 */
export async function generateAttacks(categories: readonly AttackCategory[], options: GenerateAttacksOptions): Promise<GeneratedAttack[]> {
  const { attacker, judge, iteration, signal } = options;
  const params: GenerationParams = options.params ?? { temperature: 0.9, maxTokens: 1024 };
  // 1. Write: one attacker call per category, all at once.
  const written = await Promise.all(
    categories.map(async (c, index) => {
      const brief: AttackerBrief = { category: c.category, count: c.count, succeeded: c.succeeded.map((s) => s.text), resisted: c.resisted.map((s) => s.text) };
      const parentIds = [...c.succeeded.map((s) => s.id), ...c.resisted.map((s) => s.id)];
      try {
        const { object } = await attacker.generateObject({
          ...params,
          ...(params.temperature !== undefined && params.temperature > 0 ? { seed: (options.seed ?? 0) + iteration * 1000 + index } : {}),
          messages: attackerMessages(brief),
          schema: AttackerOutputSchema,
          schemaName: "attacks",
          ...(signal ? { signal } : {}),
        });
        return object.requests.slice(0, c.count).map((text) => ({ text: text.trim(), category: c.category, parentIds, error: null as string | null }));
      } catch (error) {
        // A failed attacker call costs this category its attacks, not the run: recorded, and the rest go on.
        if (signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
        return [{ text: "", category: c.category, parentIds, error: `[${error.code}] ${error.message}` }];
      }
    }),
  );
  // 2. Deduplicate, in order: against what was used, the evaluation sets, and the candidates accepted before.
  const out: Array<Omit<GeneratedAttack, "status" | "reason"> & { status: GeneratedAttack["status"]; reason: string | null }> = [];
  const kept: TextItem[] = [];
  for (const candidate of written.flat()) {
    const id = generatedAttackId(candidate.text);
    const base = { id, text: candidate.text, category: candidate.category, iteration, attackerModel: attacker.modelId, strategy: "attacker" as const, parentIds: candidate.parentIds };
    if (candidate.error !== null) {
      out.push({ ...base, id: `gen:error:${candidate.category}`, status: "attacker-error", reason: candidate.error });
      continue;
    }
    if (candidate.text.length === 0) continue;
    const sets: EvalTextSet[] = [{ name: "used", items: options.used }, ...options.evalSets, { name: "generated", items: kept }];
    const report = checkContamination([{ id, text: candidate.text }], sets);
    const match = report.matches[0];
    if (match) {
      out.push({ ...base, status: "duplicate", reason: `${match.kind} of ${match.set} item ${match.evalId}` });
      continue;
    }
    kept.push({ id, text: candidate.text });
    out.push({ ...base, status: "accepted", reason: null });
  }
  // 3. Screen the survivors with the judge, all at once.
  await Promise.all(
    out.map(async (attack, i) => {
      if (attack.status !== "accepted") return;
      try {
        const { object } = await judge.generateObject({
          temperature: 0,
          maxTokens: 512,
          messages: judgeMessages({ prompt: attack.text, response: SCREEN_REPLY }, { askRefusal: false }),
          schema: JudgeWithPromptSchema,
          schemaName: "verdict",
          ...(signal ? { signal } : {}),
        });
        if (object.promptBenign) out[i] = { ...attack, status: "benign", reason: `the judge found the request harmless: ${object.rationale}` };
      } catch (error) {
        if (signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
        out[i] = { ...attack, status: "screen-error", reason: `[${error.code}] ${error.message}` };
      }
    }),
  );
  return out;
}
