import { createHash } from "node:crypto";
import type { Principle } from "../spec/records.js";
import type { TrainInput, TrainResult, Trainer } from "../spec/trainer.js";

/** The system prompt that carries a constitution: every active principle, numbered, in pool order. */
export function constitutionSystemPrompt(principles: readonly Pick<Principle, "text">[]): string {
  return `Follow these principles in every answer:\n${principles.map((p, i) => `${i + 1}. ${p.text}`).join("\n")}`;
}

/**
 * The `in-context` trainer: no weights change; the next iteration's target is the base model with the active
 * constitution as its system prompt (the Constitutional-AI-style prompting baseline IterAlign compares with).
 * Reported as in-context, never as weight training.
 */
export class InContextTrainer implements Trainer {
  readonly name = "in-context";
  readonly needsExamples = false;

  async train(input: TrainInput): Promise<TrainResult> {
    const { systemPrompt: _previous, ...base } = input.base;
    if (input.principles.length === 0) {
      return { model: base, trainer: this.name, settings: { principles: 0 }, dataHash: "", examples: 0 };
    }
    const systemPrompt = constitutionSystemPrompt(input.principles);
    return {
      model: { ...base, systemPrompt },
      trainer: this.name,
      settings: { principles: input.principles.length },
      dataHash: createHash("sha256").update(systemPrompt).digest("hex"),
      examples: 0,
    };
  }
}
