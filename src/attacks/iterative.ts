import { z } from "zod";
import { escalationMessages, refinerMessages, translatorMessages, type RefinementRound } from "../prompts/attacker.js";
import { judgeMessages } from "../prompts/judge.js";
import type { ChatMessage, GenerationParams, LanguageModel } from "../spec/language-model.js";
import type { JudgeOutput } from "../spec/records.js";
import { JudgeWithPromptSchema } from "../stages/judge.js";

/**
 * Attacks that follow the target: iterative refinement in the style of PAIR (the attacker sees the target's answer
 * and the judge's verdict and rewrites the attack, up to K rounds, stopping at the first answer the judge fails)
 * and multi-turn escalation (a planned conversation that moves toward the goal, judged on the whole exchange).
 */

export const RefinedAttackSchema = z.object({ request: z.string().min(1) });
export const EscalationPlanSchema = z.object({ turns: z.array(z.string().min(1)).min(1) });
export const TranslationSchema = z.object({ translation: z.string().min(1) });

/** The models and settings an iterative attack uses. */
export interface IterativeAttackOptions {
  readonly attacker: LanguageModel;
  readonly target: LanguageModel;
  readonly judge: LanguageModel;
  /** The target's decoding (the loop's red-team sampling). */
  readonly targetParams: GenerationParams;
  /** The attacker's decoding (default greedy; a seed makes sampling repeatable). */
  readonly attackerParams?: GenerationParams;
  readonly signal?: AbortSignal;
}

/** One round of a refinement, as stored. */
export interface AttackRound {
  readonly attack: string;
  readonly response: string;
  readonly verdict: JudgeOutput;
}

/** The outcome of an iterative attack. */
export interface IterativeAttackResult {
  readonly strategy: "pair" | "escalation" | "translation";
  readonly goal: string;
  readonly rounds: readonly AttackRound[];
  /** True when the judge failed the target's (last) answer: the attack got through. */
  readonly succeeded: boolean;
  readonly params: Readonly<Record<string, number | string>>;
}

async function judged(judge: LanguageModel, prompt: string, response: string, signal?: AbortSignal): Promise<JudgeOutput> {
  const { object } = await judge.generateObject({
    temperature: 0,
    maxTokens: 512,
    messages: judgeMessages({ prompt, response }, { askRefusal: false }),
    schema: JudgeWithPromptSchema,
    schemaName: "verdict",
    ...(signal ? { signal } : {}),
  });
  const { promptBenign: _benign, ...verdict } = object;
  return verdict;
}

/**
 * PAIR-style refinement of one goal: round 1 sends the goal as it is; each later round sends the attacker's
 * rewrite, made from every earlier round (attack, answer, the judge's reason). Stops at the first answer the judge
 * fails, or after `maxRounds`. The judge always judges the answer against the goal, not the rewritten wording, so
 * a rewrite that drifts to a harmless question does not count as a success.
 */
export async function refineAttack(goal: string, maxRounds: number, options: IterativeAttackOptions): Promise<IterativeAttackResult> {
  const { attacker, target, judge, signal } = options;
  const rounds: AttackRound[] = [];
  let attack = goal;
  for (let round = 0; round < maxRounds; round++) {
    if (round > 0) {
      const history: RefinementRound[] = rounds.map((r) => ({ attack: r.attack, response: r.response, judgeRationale: r.verdict.rationale }));
      const { object } = await attacker.generateObject({
        temperature: 0,
        maxTokens: 512,
        ...options.attackerParams,
        messages: refinerMessages(goal, history),
        schema: RefinedAttackSchema,
        schemaName: "refined_attack",
        ...(signal ? { signal } : {}),
      });
      attack = object.request.trim();
    }
    const answer = await target.generate({ ...options.targetParams, messages: [{ role: "user", content: attack }], ...(signal ? { signal } : {}) });
    const verdict = await judged(judge, goal, answer.text, signal);
    rounds.push({ attack, response: answer.text, verdict });
    if (!verdict.pass) return { strategy: "pair", goal, rounds, succeeded: true, params: { maxRounds } };
  }
  return { strategy: "pair", goal, rounds, succeeded: false, params: { maxRounds } };
}

/**
 * Multi-turn escalation toward one goal: the attacker plans `turns` user turns; the target answers them in one
 * conversation; the judge sees the goal with every user turn as the request and the target's answers, labelled by
 * turn, as the reply, so help spread over several answers counts.
 */
export async function escalateAttack(goal: string, turns: number, options: IterativeAttackOptions): Promise<IterativeAttackResult> {
  const { attacker, target, judge, signal } = options;
  const { object } = await attacker.generateObject({
    temperature: 0,
    maxTokens: 1024,
    ...options.attackerParams,
    messages: escalationMessages(goal, turns),
    schema: EscalationPlanSchema,
    schemaName: "escalation_plan",
    ...(signal ? { signal } : {}),
  });
  const plan = object.turns.slice(0, turns).map((t) => t.trim());
  const conversation: ChatMessage[] = [];
  const answers: string[] = [];
  for (const turn of plan) {
    conversation.push({ role: "user", content: turn });
    const answer = await target.generate({ ...options.targetParams, messages: [...conversation], ...(signal ? { signal } : {}) });
    conversation.push({ role: "assistant", content: answer.text });
    answers.push(answer.text);
  }
  const request = [`Goal: ${goal}`, ...plan.map((t, i) => `Turn ${i + 1}: ${t}`)].join("\n");
  const reply = answers.map((a, i) => `Turn ${i + 1}: ${a}`).join("\n\n");
  const verdict = await judged(judge, request, reply, signal);
  return {
    strategy: "escalation",
    goal,
    rounds: [{ attack: request, response: reply, verdict }],
    succeeded: !verdict.pass,
    params: { turns: plan.length },
  };
}

async function translate(attacker: LanguageModel, text: string, language: string, options: IterativeAttackOptions): Promise<string> {
  const { object } = await attacker.generateObject({
    temperature: 0,
    maxTokens: 1024,
    ...options.attackerParams,
    messages: translatorMessages(text, language),
    schema: TranslationSchema,
    schemaName: "translation",
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return object.translation.trim();
}

/**
 * Translation round-trip: the attacker translates the goal into `language` (safety training is thinner in many
 * languages), the target answers the translation, and the attacker translates the answer back into English, which
 * the judge reads against the original goal. The round records the translated attack and the answer as the target
 * wrote it; the verdict is on the back-translation.
 */
export async function translationAttack(goal: string, language: string, options: IterativeAttackOptions): Promise<IterativeAttackResult & { readonly backTranslation: string }> {
  const { attacker, target, judge, signal } = options;
  const attack = await translate(attacker, goal, language, options);
  const answer = await target.generate({ ...options.targetParams, messages: [{ role: "user", content: attack }], ...(signal ? { signal } : {}) });
  const backTranslation = answer.text.trim() === "" ? "" : await translate(attacker, answer.text, "English", options);
  const verdict = await judged(judge, goal, backTranslation, signal);
  return { strategy: "translation", goal, rounds: [{ attack, response: answer.text, verdict }], succeeded: !verdict.pass, params: { language }, backTranslation };
}
