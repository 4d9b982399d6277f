import type { ChatMessage } from "../spec/language-model.js";

/**
 * The conversation the target answers for a red-team prompt: a single user turn with the prompt text exactly
 * as the dataset gave it (plain, or wrapped in Chain-of-Utterances). Red-teaming, critique-revise and the
 * training examples all build the prompt here, so the fine-tuning data shows the model the very prompt it
 * failed on, never one that carries constitutions.
 */
export function targetMessages(prompt: string): ChatMessage[] {
  return [{ role: "user", content: prompt }];
}
