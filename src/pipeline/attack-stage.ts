import { z } from "zod";
import { generateAttacks, type GeneratedAttack } from "../attacks/generate.js";
import { escalateAttack, refineAttack, translationAttack } from "../attacks/iterative.js";
import { IterAlignError } from "../spec/errors.js";
import { transformById } from "../attacks/transforms.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import type { LanguageModel } from "../spec/language-model.js";
import { AttemptSchema, VerdictSchema, type Attempt, type Verdict } from "../spec/records.js";
import { judge, judgePanel } from "../stages/judge.js";
import { redTeam } from "../stages/red-team.js";
import { okRecords } from "../stages/stage-item.js";
import type { StageCheckpoint } from "./checkpoint.js";
import { jsonlFile } from "./run-layout.js";
import type { RunContext } from "./run-context.js";

/**
 * The attack stage of `loop.attacks`, before an iteration's red team: writes new attacks against the current
 * target (attacker, deduplication, judge screen), keeps a share of them out of training and measures their
 * success there, picks earlier failures to replay, and hands the iteration the fresh and replayed prompts to
 * red-team beside the train split's. Its result is committed to the store as one value, so a resumed run reads it
 * back instead of writing other attacks.
 */

/** A generated attack as the iteration used it. */
export const UsedAttackSchema = z.object({
  id: z.string(),
  /** The iteration it was written in. */
  iteration: z.number().int().nonnegative(),
  text: z.string(),
  category: z.string(),
  strategy: z.string(),
  status: z.enum(["accepted", "duplicate", "benign", "screen-error", "attacker-error"]),
  reason: z.string().nullable(),
  parentIds: z.array(z.string()),
  attackerModel: z.string(),
  /** `train` (red-teamed in the batch), `heldout` (measured, never trained on), or null when dropped. */
  use: z.enum(["train", "heldout"]).nullable(),
  /** The transformed text the target is sent. */
  sent: z.string().nullable(),
  /** For held-out attacks: whether the target's answer failed the judge (the attack succeeded); null on an error. */
  succeeded: z.boolean().nullable(),
  /** For held-out adaptive attacks: rounds played (PAIR rewrites, escalation turns); null otherwise. */
  rounds: z.number().int().nonnegative().nullable().default(null),
});
export type UsedAttack = z.infer<typeof UsedAttackSchema>;

const Tally = z.record(z.string(), z.object({ n: z.number().int().nonnegative(), succeeded: z.number().int().nonnegative() }));

/** What the attack stage did, in the iteration's metrics (`attacks`). */
export const AttackSummarySchema = z.object({
  generated: z.number().int().nonnegative(),
  accepted: z.number().int().nonnegative(),
  dropped: z.record(z.string(), z.number().int().nonnegative()),
  heldout: z.number().int().nonnegative(),
  batch: z.object({ static: z.number().int().nonnegative(), replay: z.number().int().nonnegative(), fresh: z.number().int().nonnegative() }),
  heldoutByStrategy: Tally,
  heldoutByCategory: Tally,
});
export type AttackSummary = z.infer<typeof AttackSummarySchema>;

const AttackValueSchema = z.object({
  attacks: z.array(UsedAttackSchema),
  replay: z.array(z.object({ id: z.string(), text: z.string(), category: z.string().nullable(), lastPass: z.boolean().nullable() })),
  summary: AttackSummarySchema,
});
type AttackValue = z.infer<typeof AttackValueSchema>;

/** What the iteration gets from the attack stage. */
export interface AttackBatch {
  /** Replayed, then fresh prompts, to red-team after the train split's. */
  readonly prompts: RedTeamPrompt[];
  /** Per prompt id: `static`, `replay` or `attack:<strategy>` (for per-source failure counts). */
  readonly sourceOf: ReadonlyMap<string, string>;
  /** Per replayed prompt id: its verdict the last time it was judged (true = passed). */
  readonly lastPass: ReadonlyMap<string, boolean | null>;
  readonly summary: AttackSummary;
}

/** How many prompts of a batch are fresh attacks and replays (the rest come from the train split). */
export function batchShares(batchSize: number, attacks: { fresh: number; replay: number }): { fresh: number; replay: number; static: number } {
  const fresh = Math.floor(batchSize * attacks.fresh);
  const replay = Math.floor(batchSize * attacks.replay);
  return { fresh, replay, static: Math.max(1, batchSize - fresh - replay) };
}

const pad = (n: number): string => String(n).padStart(3, "0");

/** Strategies that play against the target (attacker and judge in the loop): `pair:K`, `escalation:N`, `translation:<language>`. */
export function isAdaptive(strategy: string): boolean {
  return /^(pair|escalation):[1-9]\d*$|^translation:\S.*$/.test(strategy);
}

/** Earlier iterations' judged prompts, per prompt id: its text, the iterations it failed and its latest verdict. */
function history(checkpoint: StageCheckpoint, iteration: number): Map<string, { text: string; failedAt: number[]; judged: number; lastPass: boolean; lastAt: number }> {
  const out = new Map<string, { text: string; failedAt: number[]; judged: number; lastPass: boolean; lastAt: number }>();
  for (let j = 0; j < iteration; j++) {
    const attempts: Attempt[] = okRecords(checkpoint.load(j, "red-team", AttemptSchema) ?? []);
    const verdicts: Verdict[] = okRecords(checkpoint.load(j, "judge", VerdictSchema) ?? []);
    const bySubject = new Map(verdicts.map((v) => [v.subjectId, v]));
    for (const a of attempts) {
      const v = bySubject.get(a.id);
      if (!v) continue;
      const h = out.get(a.promptId) ?? { text: a.prompt, failedAt: [], judged: 0, lastPass: true, lastAt: -1 };
      h.judged++;
      if (!v.verdict.pass) h.failedAt.push(j);
      h.lastPass = v.verdict.pass;
      h.lastAt = j;
      out.set(a.promptId, h);
    }
  }
  return out;
}

const dataset = (id: string): string => {
  const prefix = id.split(":")[0] ?? "";
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(prefix) ? prefix : "replay";
};

/** Runs (or reads back) the attack stage of one iteration. */
export async function attackStage(
  ctx: RunContext,
  input: {
    readonly iteration: number;
    readonly staticBatch: readonly RedTeamPrompt[];
    /** Every prompt of the split (train and held-out): no attack may repeat one. */
    readonly splitPrompts: readonly RedTeamPrompt[];
    readonly attacker: LanguageModel;
    readonly checkpoint: StageCheckpoint;
  },
): Promise<AttackBatch> {
  const { config } = ctx;
  const spec = config.loop.attacks;
  if (!spec) throw new Error("attackStage without loop.attacks");
  const { iteration, checkpoint } = input;
  const shares = batchShares(config.loop.batchSize, spec);
  let value = checkpoint.loadValue(iteration, "attacks", AttackValueSchema);
  if (!value) {
    value = await runAttackStage(ctx, input, shares);
    checkpoint.saveValue(iteration, "attacks", value);
  }
  ctx.layout.writeIteration(iteration, "attacks.jsonl", jsonlFile(value.attacks));
  const sourceOf = new Map<string, string>();
  for (const p of input.staticBatch) sourceOf.set(p.id, "static");
  const prompts: RedTeamPrompt[] = [];
  value.replay.forEach((r, index) => {
    sourceOf.set(r.id, "replay");
    prompts.push({ id: r.id, dataset: dataset(r.id), text: r.text, category: r.category, source: { file: `replay/it${pad(iteration)}`, line: null, index } });
  });
  value.attacks
    .filter((a) => a.use === "train")
    .forEach((a, index) => {
      sourceOf.set(a.id, `attack:${a.strategy}`);
      prompts.push({ id: a.id, dataset: "generated", text: a.sent ?? a.text, category: a.category, source: { file: `attacks/it${pad(iteration)}`, line: null, index } });
    });
  return { prompts, sourceOf, lastPass: new Map(value.replay.map((r) => [r.id, r.lastPass])), summary: value.summary };
}

async function runAttackStage(
  ctx: RunContext,
  input: { readonly iteration: number; readonly staticBatch: readonly RedTeamPrompt[]; readonly splitPrompts: readonly RedTeamPrompt[]; readonly attacker: LanguageModel; readonly checkpoint: StageCheckpoint },
  shares: { fresh: number; replay: number; static: number },
): Promise<AttackValue> {
  const { config, models, signal } = ctx;
  const spec = config.loop.attacks as NonNullable<typeof config.loop.attacks>;
  const { iteration, checkpoint } = input;
  // 1. Replay: prompts that failed before, the least replayed first, then the most recent failure, then by id.
  const past = history(checkpoint, iteration);
  // Earlier iterations' attack stages, read once: what they replayed, and every attack they wrote.
  const replayedBefore = new Map<string, number>();
  const earlier: Array<{ id: string; text: string }> = [];
  for (let j = 0; j < iteration; j++) {
    const v = checkpoint.loadValue(j, "attacks", AttackValueSchema);
    for (const r of v?.replay ?? []) replayedBefore.set(r.id, (replayedBefore.get(r.id) ?? 0) + 1);
    for (const a of v?.attacks ?? []) earlier.push({ id: a.id, text: a.text });
  }
  const categoryOf = new Map(input.splitPrompts.map((p) => [p.id, p.category]));
  const failed = [...past.entries()].filter(([, h]) => h.failedAt.length > 0);
  failed.sort(([a, ha], [b, hb]) => (replayedBefore.get(a) ?? 0) - (replayedBefore.get(b) ?? 0) || Math.max(...hb.failedAt) - Math.max(...ha.failedAt) || (a < b ? -1 : a > b ? 1 : 0));
  const replay = failed.slice(0, shares.replay).map(([id, h]) => ({ id, text: h.text, category: categoryOf.get(id) ?? null, lastPass: h.lastPass }));

  // 2. Fresh attacks: per category, from what got through and what did not in the earlier iterations.
  // The categories of the iteration's train-split prompts, plus the user's topics.
  const categories = [...new Set([...input.staticBatch.map((p) => p.category).filter((c): c is string => c !== null), ...(spec.categories ?? [])])].sort();
  const topics = categories.length > 0 ? categories : ["general"];
  const examples = (pass: boolean): Array<{ id: string; text: string }> =>
    [...past.entries()]
      .filter(([, h]) => h.lastPass === pass)
      .sort(([a, ha], [b, hb]) => hb.lastAt - ha.lastAt || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, 3)
      .map(([id, h]) => ({ id, text: h.text }));
  const generated: GeneratedAttack[] =
    shares.fresh === 0
      ? []
      : await generateAttacks(
          topics.map((category) => ({ category, count: spec.perCategory, succeeded: examples(false), resisted: examples(true) })),
          {
            attacker: input.attacker,
            judge: models.judge,
            iteration,
            used: [...input.splitPrompts.map((p) => ({ id: p.id, text: p.text })), ...earlier],
            evalSets: ctx.evalTexts ? [...(await ctx.evalTexts())] : [],
            params: { temperature: spec.temperature, maxTokens: 1024 },
            seed: spec.seed,
            ...(signal ? { signal } : {}),
          },
        );
  // 3. Held-out share (the accepted attacks with the smallest ids: a hash order, so no category is favoured), then
  //    the train share up to the batch's fresh count; strategies given in turn.
  const accepted = generated.filter((a) => a.status === "accepted");
  const heldoutCount = Math.round(accepted.length * spec.heldoutShare);
  const heldoutIds = new Set([...accepted].sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, heldoutCount).map((a) => a.id));
  let trainLeft = shares.fresh;
  let trainTurn = 0;
  let heldoutTurn = 0;
  const heldoutStrategies = spec.heldoutStrategies ?? spec.strategies;
  const attacks: UsedAttack[] = generated.map((a) => {
    const base = { id: a.id, iteration: a.iteration, text: a.text, category: a.category, status: a.status, reason: a.reason, parentIds: [...a.parentIds], attackerModel: a.attackerModel, rounds: null };
    if (a.status !== "accepted") return { ...base, strategy: "plain", use: null, sent: null, succeeded: null };
    const use: UsedAttack["use"] = heldoutIds.has(a.id) ? "heldout" : trainLeft > 0 ? "train" : null;
    if (use === "train") trainLeft--;
    if (use === null) return { ...base, strategy: "plain", use, sent: null, succeeded: null, reason: "more accepted attacks than the batch's fresh share" };
    const strategy = (use === "train" ? spec.strategies[trainTurn++ % spec.strategies.length] : heldoutStrategies[heldoutTurn++ % heldoutStrategies.length]) as string;
    // Adaptive strategies play against the target in step 4; their text is what they end up sending.
    const sent = isAdaptive(strategy) ? null : strategy === "plain" ? a.text : transformById(strategy, spec.seed).apply(a.text);
    return { ...base, strategy, use, sent, succeeded: null };
  });
  // 4a. Held-out adaptive attacks: PAIR rewrites, multi-turn escalation, translation round-trips, one goal each.
  const adaptive = attacks.filter((a) => a.use === "heldout" && isAdaptive(a.strategy));
  const options = { attacker: input.attacker, target: models.target, judge: models.judge, targetParams: config.loop.redTeam, ...(signal ? { signal } : {}) };
  const played = await Promise.all(
    adaptive.map(async (a) => {
      const [kind, arg] = a.strategy.split(":", 2) as [string, string];
      try {
        const result =
          kind === "pair" ? await refineAttack(a.text, Number(arg), options) : kind === "escalation" ? await escalateAttack(a.text, Number(arg), options) : await translationAttack(a.text, arg, options);
        return { ...a, sent: result.rounds.at(-1)?.attack ?? null, succeeded: result.succeeded, rounds: result.rounds.length };
      } catch (error) {
        if (signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
        return { ...a, reason: `[${error.code}] ${error.message}` };
      }
    }),
  );
  for (const p of played) attacks[attacks.findIndex((a) => a.id === p.id)] = p;
  // 4b. The other held-out attacks against the current target: red team and judge, as the loop would.
  const heldout = attacks.filter((a) => a.use === "heldout" && !isAdaptive(a.strategy));
  if (heldout.length > 0) {
    const prompts: RedTeamPrompt[] = heldout.map((a, index) => ({ id: `${a.id}+heldout`, dataset: "generated", text: a.sent ?? a.text, category: a.category, source: { file: `attacks/it${pad(iteration)}`, line: null, index } }));
    const answered = okRecords(await redTeam(prompts, { target: models.target, iteration, params: config.loop.redTeam, ...(signal ? { signal } : {}) }));
    const verdicts = okRecords(
      models.judges
        ? await judgePanel(answered, { judges: models.judges, rule: config.loop.judgeRule, iteration, preset: config.loop.judge, ...(signal ? { signal } : {}) })
        : await judge(answered, { judge: models.judge, iteration, preset: config.loop.judge, ...(signal ? { signal } : {}) }),
    );
    const promptOf = new Map(answered.map((x) => [x.id, x.promptId]));
    const passOf = new Map(verdicts.map((v) => [promptOf.get(v.subjectId) ?? "", v.verdict.pass]));
    for (const a of heldout) {
      const pass = passOf.get(`${a.id}+heldout`);
      const i = attacks.indexOf(a);
      attacks[i] = { ...a, succeeded: pass === undefined ? null : !pass };
    }
  }
  const tally = (key: (a: UsedAttack) => string): Record<string, { n: number; succeeded: number }> => {
    const out: Record<string, { n: number; succeeded: number }> = {};
    for (const a of attacks.filter((x) => x.use === "heldout" && x.succeeded !== null)) {
      const t = (out[key(a)] ??= { n: 0, succeeded: 0 });
      t.n++;
      if (a.succeeded) t.succeeded++;
    }
    return out;
  };
  const dropped: Record<string, number> = {};
  for (const a of generated) if (a.status !== "accepted") dropped[a.status] = (dropped[a.status] ?? 0) + 1;
  const summary: AttackSummary = {
    generated: generated.length,
    accepted: accepted.length,
    dropped,
    heldout: attacks.filter((a) => a.use === "heldout").length,
    batch: { static: input.staticBatch.length, replay: replay.length, fresh: attacks.filter((a) => a.use === "train").length },
    heldoutByStrategy: tally((a) => a.strategy),
    heldoutByCategory: tally((a) => a.category),
  };
  return { attacks, replay, summary };
}
