import { z } from "zod";
import { ChatMessageSchema } from "./language-model.js";

/**
 * Records the IterAlign loop produces. Every record names its parents, the stage, the model and a hash of the
 * exact prompt sent, so any artifact can be traced back to the calls that made it. These are contracts only.
 */

export const HarmDimensionSchema = z.enum(["harmless", "honest", "helpful"]);
export type HarmDimension = z.infer<typeof HarmDimensionSchema>;

export const SeveritySchema = z.enum(["none", "low", "medium", "high"]);
export type Severity = z.infer<typeof SeveritySchema>;

/** Fields every stage output carries. */
export const ProvenanceSchema = z.object({
  /** Stable, deterministic id (derived from the run's inputs, never random). */
  id: z.string().min(1),
  iteration: z.number().int().nonnegative(),
  /** Ids of the records this one was made from. */
  parentIds: z.array(z.string()),
  /** Model id that produced it, or null for records made without a model. */
  model: z.string().nullable(),
  /** sha256 of the canonical JSON of the messages sent, or null. */
  promptHash: z.string().nullable(),
});

/** The target's answer to a red-team prompt (stage `red-team`). */
export const AttemptSchema = ProvenanceSchema.extend({
  promptId: z.string(),
  /** The prompt's harm category, when its dataset has one. */
  category: z.string().optional(),
  /** The prompt as the target saw it (CoU-wrapped when enabled). */
  prompt: z.string(),
  response: z.string(),
  finishReason: z.enum(["stop", "length", "abort"]),
});
export type Attempt = z.infer<typeof AttemptSchema>;

/** What the judge answers: the structured output schema of the `judge` stage. */
export const JudgeOutputSchema = z.object({
  pass: z.boolean().describe("true when the response is harmless, honest and helpful"),
  violated: z.array(HarmDimensionSchema).max(3).describe("which of the three H's the response violates"),
  severity: SeveritySchema,
  rationale: z.string().max(600).describe("one or two sentences on why"),
});
export type JudgeOutput = z.infer<typeof JudgeOutputSchema>;

/** A judge's verdict on an attempt (or on a revision, in the gate). */
export const VerdictSchema = ProvenanceSchema.extend({
  subjectId: z.string(),
  preset: z.enum(["full", "paper"]),
  verdict: JudgeOutputSchema,
  /** Whether the judge considers the prompt itself benign (used to reject over-refusals). */
  promptBenign: z.boolean().nullable(),
  /** Hash of the judge's configuration (model, prompt template, schema, decoding): see `judgeConfigHash`. */
  judgeConfigHash: z.string().optional(),
  /** With several judges (`roles.judges`): each one's verdict, in order; a judge not asked (cascade) is absent. */
  judges: z
    .array(
      z.object({
        model: z.string(),
        pass: z.boolean().nullable(),
        severity: SeveritySchema.nullable(),
        /** The error of a judge whose call failed (its verdict then counts for nothing). */
        error: z.string().optional(),
      }),
    )
    .optional(),
});
export type Verdict = z.infer<typeof VerdictSchema>;

/** One principle as the oracle proposes it. */
export const ProposedConstitutionSchema = z.object({
  title: z.string().min(1).max(80),
  principle: z.string().min(1).max(400),
  failureIds: z.array(z.string()).min(1),
});
export type ProposedConstitution = z.infer<typeof ProposedConstitutionSchema>;

/** The oracle's structured answer in the `propose` stage. */
export const ProposeOutputSchema = z.object({
  constitutions: z.array(ProposedConstitutionSchema).min(1).max(8),
});

/** A principle in the constitution pool. */
export const PrincipleSchema = z.object({
  id: z.string().min(1),
  version: z.number().int().positive(),
  title: z.string(),
  text: z.string(),
  source: z.enum(["seed", "discovered", "user"]),
  firstIteration: z.number().int().nonnegative(),
  /** Failure (attempt) ids that motivated it, across merges. */
  evidence: z.array(z.string()),
  /** Ids of principles merged into this one. */
  mergedFrom: z.array(z.string()),
  status: z.enum(["active", "retired"]),
});
export type Principle = z.infer<typeof PrincipleSchema>;

/** The target's corrected answer under constitutions (stage `self-correct`). */
export const RevisionSchema = ProvenanceSchema.extend({
  attemptId: z.string(),
  mode: z.enum(["paper", "critique-revise"]),
  principleIds: z.array(z.string()),
  critique: z.string().nullable(),
  revised: z.string(),
});
export type Revision = z.infer<typeof RevisionSchema>;

/** The gate's decision on a revision. */
export const GateDecisionSchema = ProvenanceSchema.extend({
  revisionId: z.string(),
  accepted: z.boolean(),
  reason: z.enum(["pass", "still-failing", "over-refusal", "judge-error"]),
  /** Why the gate judge failed (reason `judge-error` only). */
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type GateDecision = z.infer<typeof GateDecisionSchema>;

/** A training example: the original prompt (never the constitution) and the accepted revision. */
export const TrainingExampleSchema = z.object({
  id: z.string(),
  iteration: z.number().int().nonnegative(),
  attemptId: z.string(),
  revisionId: z.string(),
  messages: z.array(ChatMessageSchema),
  chosen: z.string(),
  rejected: z.string(),
});
export type TrainingExample = z.infer<typeof TrainingExampleSchema>;
