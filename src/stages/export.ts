import { CONSTITUTION_HEADER } from "../prompts/self-correct.js";
import { targetMessages } from "../prompts/target.js";
import { IterAlignError } from "../spec/errors.js";
import type { ChatMessage } from "../spec/language-model.js";
import type { Attempt, GateDecision, Principle, Revision, TrainingExample } from "../spec/records.js";
import { recordId } from "./ids.js";

/** Inputs of {@link toTrainingExamples}. */
export interface TrainingExampleInputs {
  /** Gate decisions; only accepted ones become examples. */
  readonly decisions: readonly GateDecision[];
  readonly revisions: readonly Revision[];
  readonly attempts: readonly Attempt[];
  /** Every principle the revisions may have used; their text must not leak into a training prompt. */
  readonly principles: readonly Pick<Principle, "text">[];
  readonly iteration: number;
}

/**
 * The start of a spliced constitution block. Checked even without the principle texts, since no red-team
 * prompt has a reason to contain it.
 */
const BLOCK_START = `${CONSTITUTION_HEADER}\n- `;

/**
 * Throws when a training prompt carries constitution text: a spliced block, or any principle's text (as
 * written, or flattened the way the block writes it). Fine-tuning on such a prompt would teach the model to
 * behave only when the constitution is in context, the opposite of engraving it into the weights.
 */
export function assertNoConstitutionText(
  examples: readonly Pick<TrainingExample, "id" | "messages">[],
  principles: readonly Pick<Principle, "text">[] = [],
): void {
  const needles = new Set<string>([BLOCK_START]);
  for (const { text } of principles) {
    if (text.trim() === "") continue;
    needles.add(text.trim());
    needles.add(text.replace(/\s*\n\s*/g, " ").trim());
  }
  for (const example of examples) {
    for (const message of example.messages) {
      for (const needle of needles) {
        if (message.content.includes(needle)) {
          throw new IterAlignError("DATA_INVALID", `training example ${example.id}: its prompt contains constitution text`, {
            details: { exampleId: example.id, found: needle },
          });
        }
      }
    }
  }
}

function indexById<T extends { id: string }>(records: readonly T[]): Map<string, T> {
  return new Map(records.map((r) => [r.id, r]));
}

/**
 * An answer as exported for training: leading whitespace removed. Trainers that tokenize prompt and answer
 * apart (TRL's DPO) lose the prompt/answer token alignment on an answer that starts with a newline or space,
 * and chat templates put their own separator before the answer anyway. Trailing text is kept as written.
 */
export function normalizeAnswer(text: string): string {
  return text.trimStart();
}

/** True for an answer that is empty once whitespace is removed: no trainer should learn from it. */
export function isEmptyAnswer(text: string): boolean {
  return text.trim() === "";
}

/**
 * SFT data from the accepted revisions: the ORIGINAL prompt (exactly what the target saw when red-teamed,
 * never the spliced one), the revision as `chosen` and the original answer as `rejected`, both normalized with
 * {@link normalizeAnswer}. Ids are `it<n>:example:<promptId>`. An accepted revision that is empty is no
 * training example (it would teach the model to say nothing). Throws when a decision's revision or attempt is
 * missing, or a prompt carries constitution text.
 */
export function toTrainingExamples(inputs: TrainingExampleInputs): TrainingExample[] {
  const revisions = indexById(inputs.revisions);
  const attempts = indexById(inputs.attempts);
  const examples: TrainingExample[] = [];
  for (const decision of inputs.decisions) {
    if (!decision.accepted) continue;
    const revision = revisions.get(decision.revisionId);
    if (revision === undefined) throw new IterAlignError("USAGE", `toTrainingExamples: no revision ${decision.revisionId} for ${decision.id}`);
    const attempt = attempts.get(revision.attemptId);
    if (attempt === undefined) throw new IterAlignError("USAGE", `toTrainingExamples: no attempt ${revision.attemptId} for ${revision.id}`);
    if (isEmptyAnswer(revision.revised)) continue;
    examples.push({
      id: recordId(inputs.iteration, "example", attempt.promptId),
      iteration: inputs.iteration,
      attemptId: attempt.id,
      revisionId: revision.id,
      messages: targetMessages(attempt.prompt),
      chosen: normalizeAnswer(revision.revised),
      rejected: normalizeAnswer(attempt.response),
    });
  }
  assertNoConstitutionText(examples, inputs.principles);
  return examples;
}

/**
 * The examples that make a preference pair: those whose rejected (original) answer is not empty. OpenAI's
 * data checks refuse an empty assistant message, and an empty "rejected" teaches a DPO trainer nothing about
 * what to avoid. The preference exports use these; `metrics.json` counts the rest as `preferencePairsDropped`.
 */
export function preferenceExamples(examples: readonly TrainingExample[]): TrainingExample[] {
  return examples.filter((e) => !isEmptyAnswer(e.rejected) && !isEmptyAnswer(e.chosen));
}

/** The export formats, by name. */
export type ExportFormat = "sharegpt" | "trl-sft" | "openai-chat" | "trl-preference" | "openai-preference";

/**
 * One JSON object per line, with a trailing newline ("" for none). Keys are in the order each exporter builds
 * them (`role` before `content`, as the formats' documentation shows): every row is built field by field from
 * a training example, so the bytes never depend on where the example came from.
 */
function jsonl(rows: readonly unknown[]): string {
  return rows.length === 0 ? "" : `${rows.map((row) => JSON.stringify(row)).join("\n")}\n`;
}

/** Copies messages as `{role, content}` so extra fields never leak and the key order is fixed. */
function plain(messages: readonly ChatMessage[]): { role: ChatMessage["role"]; content: string }[] {
  return messages.map((m) => ({ role: m.role, content: m.content }));
}

function assistant(content: string): { role: "assistant"; content: string }[] {
  return [{ role: "assistant", content }];
}

/**
 * FastChat/ShareGPT (the paper script's format), as FastChat's `train.py` reads it: ONE JSON array (it calls
 * `json.load`), each item `{"id","conversations":[{"from":"human","value"},{"from":"gpt","value"},...]}`.
 * FastChat maps only `human` and `gpt` speakers; a system message goes in the item's top-level `system` key.
 */
export function toShareGptJson(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  const items = examples.map((e) => {
    const system = e.messages.filter((m) => m.role === "system").map((m) => m.content);
    const turns = [...e.messages.filter((m) => m.role !== "system"), { role: "assistant" as const, content: e.chosen }];
    return {
      id: e.id,
      ...(system.length > 0 ? { system: system.join("\n\n") } : {}),
      conversations: turns.map((m) => ({ from: m.role === "user" ? "human" : "gpt", value: m.content })),
    };
  });
  return items.length === 0 ? "[]\n" : `[\n${items.map((item) => JSON.stringify(item)).join(",\n")}\n]\n`;
}

/** TRL SFTTrainer, conversational: `{"messages":[...prompt, {"role":"assistant",...}]}`. */
export function toTrlSftJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(examples.map((e) => ({ messages: [...plain(e.messages), ...assistant(e.chosen)] })));
}

/** OpenAI chat fine-tuning: `{"messages":[...]}` ending with the assistant's answer. */
export function toOpenAiChatJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(examples.map((e) => ({ messages: [...plain(e.messages), ...assistant(e.chosen)] })));
}

/** TRL preference (DPO), conversational: `{"prompt":[...],"chosen":[assistant],"rejected":[assistant]}`. */
export function toTrlPreferenceJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(
    preferenceExamples(examples).map((e) => ({ prompt: plain(e.messages), chosen: assistant(e.chosen), rejected: assistant(e.rejected) })),
  );
}

/** OpenAI preference fine-tuning (DPO): `{"input":{"messages"},"preferred_output","non_preferred_output"}`. */
export function toOpenAiPreferenceJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(
    preferenceExamples(examples).map((e) => ({
      input: { messages: plain(e.messages) },
      preferred_output: assistant(e.chosen),
      non_preferred_output: assistant(e.rejected),
    })),
  );
}

/** Every exporter, by format name. */
export const EXPORTERS: Readonly<Record<ExportFormat, (examples: readonly TrainingExample[]) => string>> = Object.freeze({
  sharegpt: toShareGptJson,
  "trl-sft": toTrlSftJsonl,
  "openai-chat": toOpenAiChatJsonl,
  "trl-preference": toTrlPreferenceJsonl,
  "openai-preference": toOpenAiPreferenceJsonl,
});
