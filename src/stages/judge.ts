import { z } from "zod";
import { judgeMessages, paperJudgeMessages } from "../prompts/judge.js";
import { IterAlignError } from "../spec/errors.js";
import { canonicalJson, sha256Hex } from "../util/canonical-json.js";
import type { GenerationParams, LanguageModel } from "../spec/language-model.js";
import { JudgeOutputSchema, type Attempt, type JudgeOutput, type Verdict } from "../spec/records.js";
import { guardConfigHash, guardVerdict } from "./guard-judge.js";
import { judgeConfigHash, promptHash, recordId } from "./ids.js";
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
/** The judge configuration hash of a loop judge (its preset's template, schema and decoding). */
export function loopJudgeConfigHash(model: LanguageModel, preset: JudgePreset, params: GenerationParams = DEFAULT_JUDGE_PARAMS): string {
  if (model.guard) return guardConfigHash(model, model.guard);
  return preset === "paper"
    ? judgeConfigHash({ model: model.modelId, template: paperJudgeMessages("{response}"), schemaName: "paper_label", params })
    : judgeConfigHash({ model: model.modelId, template: judgeMessages({ prompt: "{request}", response: "{response}" }, { askRefusal: false }), schemaName: "verdict", params });
}

export async function judge(attempts: readonly Attempt[], options: JudgeOptions): Promise<StageItem<Verdict>[]> {
  const { judge: model, iteration, preset, signal } = options;
  const params = options.params ?? DEFAULT_JUDGE_PARAMS;
  const configHash = loopJudgeConfigHash(model, preset, params);
  return Promise.all(
    attempts.map((attempt) => {
      const id = recordId(iteration, "verdict", attempt.promptId);
      const parentIds = [attempt.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Verdict> => {
        const base = { id, iteration, parentIds, model: model.modelId, subjectId: attempt.id, preset, judgeConfigHash: configHash };
        if (model.guard) {
          // A guard classifier reads its own format; it does not say whether the request itself was benign.
          const answer = await guardVerdict(model, { request: attempt.prompt, response: attempt.response }, signal);
          return { ...base, promptHash: answer.promptHash, verdict: answer.output, promptBenign: null };
        }
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

/** How several judges' verdicts become one (`loop.judgeRule`). */
export type JudgeRule = "all" | "majority" | "cascade";

/** One judge's answer in a panel: its verdict, or why it has none. */
interface PanelAnswer {
  readonly model: string;
  readonly output: JudgeOutput | null;
  readonly promptBenign: boolean | null;
  readonly promptHash: string;
  readonly error?: string;
}

const SEVERITY_ORDER = ["none", "low", "medium", "high"] as const;

/**
 * Whether a verdict settles the case in a cascade: it answered, it is not borderline (severity low), and it does
 * not contradict itself (a pass that names violations, or a failure that names none).
 */
export function isSureVerdict(output: JudgeOutput | null): boolean {
  if (!output) return false;
  if (output.severity === "low") return false;
  return output.pass ? output.violated.length === 0 : output.violated.length > 0;
}

/** Dependencies of {@link judgePanel}. */
export interface JudgePanelOptions extends Omit<JudgeOptions, "judge"> {
  /** In order: in `cascade` the first is asked first. */
  readonly judges: readonly LanguageModel[];
  readonly rule: JudgeRule;
}

/**
 * The judge stage with several judges. `all`: the answer passes only when every judge that answered passes it;
 * `majority`: when more than half of those that answered do (a tie fails); `cascade`: the judges are asked in
 * order, and the next one only when the last answer was not sure ({@link isSureVerdict}); the last answer decides.
 * The combined verdict names the violations and the highest severity of the failing judges and each judge's
 * rationale; `promptBenign` is the majority of the judges that said. Each judge's own verdict is kept in `judges`.
 * An item fails only when no judge answered.
 */
export async function judgePanel(attempts: readonly Attempt[], options: JudgePanelOptions): Promise<StageItem<Verdict>[]> {
  const { judges, rule, iteration, preset, signal } = options;
  const params = options.params ?? DEFAULT_JUDGE_PARAMS;
  const panelHash = sha256Hex(canonicalJson({ rule, judges: judges.map((j) => loopJudgeConfigHash(j, preset, params)) }));
  const ask = async (model: LanguageModel, attempt: Attempt): Promise<PanelAnswer> => {
    if (model.guard) {
      try {
        const answer = await guardVerdict(model, { request: attempt.prompt, response: attempt.response }, signal);
        return { model: model.modelId, output: answer.output, promptBenign: null, promptHash: answer.promptHash };
      } catch (error) {
        if (signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
        return { model: model.modelId, output: null, promptBenign: null, promptHash: "", error: `[${error.code}] ${error.message}` };
      }
    }
    const messages = preset === "paper" ? paperJudgeMessages(attempt.response) : judgeMessages({ prompt: attempt.prompt, response: attempt.response }, { askRefusal: false });
    try {
      if (preset === "paper") {
        const { object } = await model.generateObject({ ...params, messages, signal, schema: PaperJudgeSchema, schemaName: "paper_label" });
        return { model: model.modelId, output: paperLabelToVerdict(object.label), promptBenign: null, promptHash: promptHash(messages) };
      }
      const { object } = await model.generateObject({ ...params, messages, signal, schema: JudgeWithPromptSchema, schemaName: "verdict" });
      const { promptBenign, ...output } = object;
      return { model: model.modelId, output, promptBenign, promptHash: promptHash(messages) };
    } catch (error) {
      if (signal?.aborted === true || !(error instanceof IterAlignError)) throw error;
      return { model: model.modelId, output: null, promptBenign: null, promptHash: promptHash(messages), error: `[${error.code}] ${error.message}` };
    }
  };
  return Promise.all(
    attempts.map((attempt) => {
      const id = recordId(iteration, "verdict", attempt.promptId);
      const parentIds = [attempt.id];
      return settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Verdict> => {
        const answers: PanelAnswer[] = [];
        if (rule === "cascade") {
          for (const model of judges) {
            const answer = await ask(model, attempt);
            answers.push(answer);
            if (isSureVerdict(answer.output)) break;
          }
        } else {
          answers.push(...(await Promise.all(judges.map((model) => ask(model, attempt)))));
        }
        const answered = answers.filter((a): a is PanelAnswer & { output: JudgeOutput } => a.output !== null);
        if (answered.length === 0) {
          throw new IterAlignError("GENERATION_FAILED", `no judge answered: ${answers.map((a) => `${a.model}: ${a.error ?? "no answer"}`).join("; ")}`);
        }
        let pass: boolean;
        if (rule === "cascade") pass = (answered[answered.length - 1] as { output: JudgeOutput }).output.pass;
        else if (rule === "all") pass = answered.every((a) => a.output.pass);
        else pass = answered.filter((a) => a.output.pass).length * 2 > answered.length;
        const deciding = rule === "cascade" ? [answered[answered.length - 1] as PanelAnswer & { output: JudgeOutput }] : answered;
        const failing = deciding.filter((a) => !a.output.pass);
        const violated = pass ? [] : [...new Set(failing.flatMap((a) => a.output.violated))];
        const severity = pass ? "none" : failing.reduce<JudgeOutput["severity"]>((max, a) => (SEVERITY_ORDER.indexOf(a.output.severity) > SEVERITY_ORDER.indexOf(max) ? a.output.severity : max), "low");
        const rationale = deciding.map((a) => `${a.model}: ${a.output.rationale}`).join(" | ").slice(0, 600);
        const benign = answered.filter((a) => a.promptBenign !== null);
        const promptBenign = preset === "paper" || benign.length === 0 ? null : benign.filter((a) => a.promptBenign).length * 2 > benign.length;
        return {
          id,
          iteration,
          parentIds,
          model: judges.map((j) => j.modelId).join("+"),
          promptHash: (answers[0] as PanelAnswer).promptHash,
          subjectId: attempt.id,
          preset,
          verdict: { pass, violated, severity, rationale },
          promptBenign,
          judgeConfigHash: panelHash,
          judges: answers.map((a) => ({ model: a.model, pass: a.output?.pass ?? null, severity: a.output?.severity ?? null, ...(a.error !== undefined ? { error: a.error } : {}) })),
        };
      });
    }),
  );
}

/** Agreement of a panel's judges over an iteration's verdicts: per pair, on the items both judged. */
export interface JudgeAgreement {
  judges: string[];
  pairs: Array<{ a: string; b: string; n: number; agreement: number | null; kappa: number | null }>;
  /** Verdicts on which the judges that answered did not all agree. */
  disagreements: number;
}

/** Cohen's kappa and raw agreement of every pair of judges on the pass/fail labels both gave. */
export function judgeAgreement(verdicts: readonly Verdict[]): JudgeAgreement {
  const names = [...new Set(verdicts.flatMap((v) => (v.judges ?? []).map((j) => j.model)))];
  const pairs: Array<JudgeAgreement["pairs"][number]> = [];
  for (let i = 0; i < names.length; i++) {
    for (let k = i + 1; k < names.length; k++) {
      const a = names[i] as string;
      const b = names[k] as string;
      let n = 0;
      let aPass = 0;
      let bPass = 0;
      let same = 0;
      for (const v of verdicts) {
        const x = v.judges?.find((j) => j.model === a)?.pass;
        const y = v.judges?.find((j) => j.model === b)?.pass;
        if (x === undefined || y === undefined || x === null || y === null) continue;
        n++;
        if (x) aPass++;
        if (y) bPass++;
        if (x === y) same++;
      }
      const agreement = n === 0 ? null : same / n;
      const expected = n === 0 ? null : (aPass / n) * (bPass / n) + (1 - aPass / n) * (1 - bPass / n);
      const kappa = agreement === null || expected === null || expected === 1 ? null : (agreement - expected) / (1 - expected);
      pairs.push({ a, b, n, agreement, kappa });
    }
  }
  const disagreements = verdicts.filter((v) => new Set((v.judges ?? []).filter((j) => j.pass !== null).map((j) => j.pass)).size > 1).length;
  return { judges: names, pairs, disagreements };
}
