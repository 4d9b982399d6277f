import { z } from "zod";
import { canonicalJson, sha256Hex } from "../util/canonical-json.js";
import { MAX_PROPOSED_PRINCIPLES, proposeMessages, type ProposeCase } from "../prompts/propose.js";
import { OutputInvalidError } from "../spec/errors.js";
import type { GenerationParams, JsonSchema, LanguageModel } from "../spec/language-model.js";
import {
  ProposeOutputSchema,
  ProposedConstitutionSchema,
  ProvenanceSchema,
  type Attempt,
  type ProposedConstitution,
  type Verdict,
} from "../spec/records.js";
import { promptHash, recordId } from "./ids.js";
import { settleItem, type StageItem } from "./stage-item.js";

/** The oracle's proposal for one batch: its constitutions, each tied to the failures (attempt ids) it addresses. */
export const ProposalSchema = ProvenanceSchema.extend({
  constitutions: z.array(ProposedConstitutionSchema),
});
export type Proposal = z.infer<typeof ProposalSchema>;

/** A negative case: the attempt and the verdict that failed it. */
export interface Failure {
  readonly attempt: Attempt;
  readonly verdict: Verdict;
}

/** Greedy, with room for five principles in JSON. */
export const DEFAULT_PROPOSE_PARAMS: Readonly<GenerationParams> = Object.freeze({ temperature: 0, maxTokens: 4096 });

/** Dependencies of {@link propose}. */
export interface ProposeOptions {
  readonly oracle: LanguageModel;
  readonly iteration: number;
  /** Decoding settings; default {@link DEFAULT_PROPOSE_PARAMS}. */
  readonly params?: GenerationParams;
  readonly signal?: AbortSignal;
  /** Called as each item settles (per-item progress). */
  readonly onItem?: () => void;
}

/** The id the oracle cites for the i-th failure (0-based). Short, because models mangle long hash ids. */
export function caseId(index: number): string {
  return `F${index + 1}`;
}

function failureNote(verdict: Verdict): string {
  const { rationale, violated } = verdict.verdict;
  return violated.length === 0 ? rationale : `${rationale} (fails: ${violated.join(", ")})`;
}

/**
 * Keeps the constitutions whose failure ids are known, with ids mapped to attempt ids, unknown ones dropped and
 * repeats removed; a constitution left with no id is dropped. At most {@link MAX_PROPOSED_PRINCIPLES} are kept,
 * since the prompt asks for no more.
 */
export function resolveFailureIds(
  proposed: readonly ProposedConstitution[],
  idsByCitation: ReadonlyMap<string, string>,
): ProposedConstitution[] {
  const kept: ProposedConstitution[] = [];
  for (const constitution of proposed) {
    const ids = [...new Set(constitution.failureIds.map((cited) => idsByCitation.get(cited.trim())))].filter(
      (id): id is string => id !== undefined,
    );
    if (ids.length > 0) kept.push({ title: constitution.title, principle: constitution.principle, failureIds: ids });
  }
  return kept.slice(0, MAX_PROPOSED_PRINCIPLES);
}

/**
 * Stage 3: the oracle reads the batch's failures and proposes specific principles. Returns [] without calling
 * the oracle when there are no failures (the paper skips such batches), otherwise one item: the proposal
 * (`it<n>:proposal:<16 hex of the failure ids>`, parents = the failures' attempt ids), or an error row when the
 * call fails or no proposed constitution names a known failure.
 */
/**
 * The JSON schema sent to the oracle: like ProposeOutputSchema, but failure ids are limited to this batch's case
 * ids and at most {@link MAX_PROPOSED_PRINCIPLES} principles, so constrained decoders (llama.cpp grammars,
 * servers' JSON-schema response formats) cannot cite a failure that does not exist. The answer is still validated
 * with the lenient zod schema and unknown ids dropped, for servers that do not enforce schemas.
 */
export function proposeJsonSchema(caseIds: readonly string[]): JsonSchema {
  const constrained = ProposeOutputSchema.extend({
    constitutions: z
      .array(
        ProposedConstitutionSchema.extend({
          failureIds: z.array(z.enum(caseIds as [string, ...string[]])).min(1).max(Math.max(1, caseIds.length)),
        }),
      )
      .min(1)
      .max(MAX_PROPOSED_PRINCIPLES),
  });
  return z.toJSONSchema(constrained, { io: "output" });
}

export async function propose(failures: readonly Failure[], options: ProposeOptions): Promise<StageItem<Proposal>[]> {
  if (failures.length === 0) return [];
  const { oracle, iteration, signal } = options;
  const params = options.params ?? DEFAULT_PROPOSE_PARAMS;
  const parentIds = failures.map((f) => f.attempt.id);
  const id = recordId(iteration, "proposal", sha256Hex(canonicalJson(parentIds)).slice(0, 16));

  const idsByCitation = new Map<string, string>();
  const cases = failures.map(({ attempt, verdict }, index): ProposeCase => {
    // The oracle may echo the full attempt id instead of the short one; both resolve to the attempt.
    idsByCitation.set(caseId(index), attempt.id);
    idsByCitation.set(attempt.id, attempt.id);
    return { caseId: caseId(index), prompt: attempt.prompt, response: attempt.response, note: failureNote(verdict) };
  });
  const messages = proposeMessages(cases);

  const item = await settleItem({ id, parentIds, signal, ...(options.onItem ? { onSettled: options.onItem } : {}) }, async (): Promise<Proposal> => {
    const result = await oracle.generateObject({
      ...params,
      messages,
      signal,
      schema: ProposeOutputSchema,
      jsonSchema: proposeJsonSchema(cases.map((c) => c.caseId)),
      schemaName: "constitutions",
    });
    const constitutions = resolveFailureIds(result.object.constitutions, idsByCitation);
    if (constitutions.length === 0) {
      throw new OutputInvalidError("the oracle proposed no constitution that names one of the given failures", result.text);
    }
    return { id, iteration, parentIds, model: oracle.modelId, promptHash: promptHash(messages), constitutions };
  });
  return [item];
}
