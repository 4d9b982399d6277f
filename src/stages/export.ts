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
 * SFT data from the accepted revisions: the ORIGINAL prompt (exactly what the target saw when red-teamed,
 * never the spliced one), the revision as `chosen` and the original answer as `rejected`. Ids are
 * `it<n>:example:<promptId>`. Throws when a decision's revision or attempt is missing, or a prompt carries
 * constitution text.
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
    examples.push({
      id: recordId(inputs.iteration, "example", attempt.promptId),
      iteration: inputs.iteration,
      attemptId: attempt.id,
      revisionId: revision.id,
      messages: targetMessages(attempt.prompt),
      chosen: revision.revised,
      rejected: attempt.response,
    });
  }
  assertNoConstitutionText(examples, inputs.principles);
  return examples;
}

/** The export formats, by name. */
export type ExportFormat = "sharegpt" | "trl-sft" | "openai-chat" | "trl-preference" | "openai-preference";

/** One JSON object per line, keys in the order the object was built, with a trailing newline ("" for none). */
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

const SHAREGPT_SPEAKER: Record<ChatMessage["role"], string> = { system: "system", user: "human", assistant: "gpt" };

/** FastChat/ShareGPT (the paper script's format): `{"id","conversations":[{"from","value"},...]}`. */
export function toShareGptJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(
    examples.map((e) => ({
      id: e.id,
      conversations: [...e.messages, { role: "assistant" as const, content: e.chosen }].map((m) => ({
        from: SHAREGPT_SPEAKER[m.role],
        value: m.content,
      })),
    })),
  );
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
    examples.map((e) => ({ prompt: plain(e.messages), chosen: assistant(e.chosen), rejected: assistant(e.rejected) })),
  );
}

/** OpenAI preference fine-tuning (DPO): `{"input":{"messages"},"preferred_output","non_preferred_output"}`. */
export function toOpenAiPreferenceJsonl(examples: readonly TrainingExample[]): string {
  assertNoConstitutionText(examples);
  return jsonl(
    examples.map((e) => ({
      input: { messages: plain(e.messages) },
      preferred_output: assistant(e.chosen),
      non_preferred_output: assistant(e.rejected),
    })),
  );
}

/** Every exporter, by format name. */
export const EXPORTERS: Readonly<Record<ExportFormat, (examples: readonly TrainingExample[]) => string>> = Object.freeze({
  sharegpt: toShareGptJsonl,
  "trl-sft": toTrlSftJsonl,
  "openai-chat": toOpenAiChatJsonl,
  "trl-preference": toTrlPreferenceJsonl,
  "openai-preference": toOpenAiPreferenceJsonl,
});
