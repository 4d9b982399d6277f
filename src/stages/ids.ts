import { canonicalJson, sha256Hex } from "../util/canonical-json.js";
import type { ChatMessage } from "../spec/language-model.js";

/**
 * The kinds of record the stages make. The kind is part of every id, so records of different stages about the
 * same prompt never collide in the run store.
 */
export type RecordKind = "attempt" | "verdict" | "proposal" | "revision" | "gate-verdict" | "gate" | "example" | "efficacy";

/**
 * Deterministic record id: `it<iteration>:<kind>:<key>`, where the key is usually the red-team prompt id.
 * Derived from the run's inputs only, so rerunning an iteration names its records the same way.
 */
export function recordId(iteration: number, kind: RecordKind, key: string): string {
  return `it${iteration}:${kind}:${key}`;
}

/** sha256 of the canonical JSON of the exact messages sent to a model. */
export function promptHash(messages: readonly ChatMessage[]): string {
  return sha256Hex(canonicalJson(messages));
}

/**
 * What decides a judge's answers, as one hash: the model identity, the prompt template (the messages built for
 * placeholder texts), the output schema's name and the decoding settings. Recorded on every verdict, and by
 * `iteralign judge-eval`: a calibration and a run's verdicts with the same hash come from the same judge.
 */
export function judgeConfigHash(input: { readonly model: string; readonly template: readonly ChatMessage[]; readonly schemaName: string; readonly params: object }): string {
  return sha256Hex(canonicalJson({ model: input.model, template: input.template, schema: input.schemaName, params: input.params }));
}
