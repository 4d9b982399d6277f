import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { TrainingExampleSchema, type TrainingExample } from "../spec/records.js";
import type { ItemIndexRow, RecordRow, RunStore } from "../store/run-store.js";
import { MAX_PAGE_SIZE, PAGE_SIZE } from "./item-filter.js";
import type { ItemFacets, ItemPage, ItemQuery, ItemSummary, ItemTrace, StageError } from "./types.js";

/** Stages of the loop whose records make up an item, by record kind in their ids. */
const STAGES = { attempt: "red-team", verdict: "judge", revision: "self-correct", "gate-verdict": "gate", gate: "gate-decision" } as const;
type Kind = keyof typeof STAGES;

/** `it<n>:<kind>:<key>` (stages/ids.ts), split. */
const RECORD_ID = /^it(\d+):([a-z-]+):(.+)$/;

/** The record id of the same item in another stage. */
export function siblingId(itemId: string, kind: Kind): string {
  const m = RECORD_ID.exec(itemId);
  if (!m) throw new IterAlignError("USAGE", `'${itemId}' is not an item id (it<n>:attempt:<prompt id>)`);
  return `it${m[1]}:${kind}:${m[3]}`;
}

/** Longest prompt start kept in the index (and shown in listings). */
export const PROMPT_START_CHARS = 200;

/**
 * A run's red-team items, for the item browser: filtered and paged by the store's item index (kept as records are
 * written, so a 100,000-item run pages in milliseconds without reading payloads).
 */
export class ItemIndex {
  constructor(
    private readonly store: RunStore,
    private readonly runId: string,
    /** Item ids each principle is evidence for. */
    private readonly evidence: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {}

  /** Items in the run. */
  get size(): number {
    return this.store.queryItems(this.runId, {}, { offset: 0, limit: 0 }).total;
  }

  /** For every principle, how many items were revised under it and how many of those the gate accepted. */
  principleUse(): Map<string, { revised: number; accepted: number }> {
    return new Map(this.store.principleUse(this.runId).map((u) => [u.principleId, { revised: u.revised, accepted: u.accepted }]));
  }

  summary(id: string): ItemSummary | undefined {
    const found = this.store.queryItems(this.runId, { id }, { offset: 0, limit: 1 }).rows[0];
    return found ? toSummary(found) : undefined;
  }

  /** Items in run order, `size` at a time from `offset` (the static report embeds them all, page by page). */
  slice(offset: number, size: number): ItemSummary[] {
    return this.store.queryItems(this.runId, {}, { offset, limit: size }).rows.map(toSummary);
  }

  private cachedFacets: { revision: number; facets: ItemFacets } | undefined;

  /** The values the filters can take; recomputed only when the run's records changed. */
  facets(): ItemFacets {
    const revision = this.store.recordsRevision(this.runId);
    if (this.cachedFacets?.revision !== revision) this.cachedFacets = { revision, facets: this.store.itemFacets(this.runId) };
    return this.cachedFacets.facets;
  }

  query(query: ItemQuery): ItemPage {
    const offset = Math.max(0, Math.floor(query.offset ?? 0));
    const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(query.limit ?? PAGE_SIZE)));
    const { principle, offset: _o, limit: _l, ...rest } = query;
    // Revised under a principle: its own revisions, not its evidence.
    const evidence = query.revised === true ? [] : (this.evidence.get(principle ?? "") ?? []);
    const filter = { ...rest, ...(principle !== undefined ? { principle: { id: principle, evidence } } : {}) };
    const { total, rows } = this.store.queryItems(this.runId, filter, { offset, limit });
    return { total, offset, limit, items: rows.map(toSummary), facets: this.facets() };
  }
}

function toSummary(r: ItemIndexRow): ItemSummary {
  return {
    id: r.attemptId,
    iteration: r.iteration,
    promptId: r.promptId,
    dataset: r.dataset,
    category: r.category,
    promptStart: r.promptStart,
    verdict: r.verdict,
    stage: r.stage,
    gate: r.gate,
    hasError: r.errors > 0,
    principleIds: r.principleIds,
  };
}

const ItemQuerySchema = z
  .object({
    iteration: z.coerce.number().int().nonnegative().optional(),
    stage: z.enum(["red-team", "judge", "self-correct", "gate", "exported"]).optional(),
    verdict: z.enum(["pass", "fail", "error", "none"]).optional(),
    gate: z.string().min(1).max(100).optional(),
    dataset: z.string().min(1).max(200).optional(),
    category: z.string().min(1).max(200).optional(),
    principle: z.string().min(1).max(200).optional(),
    text: z.string().max(500).optional(),
    errors: z.enum(["true", "false"]).transform((v) => v === "true").optional(),
    revised: z.enum(["true", "false"]).transform((v) => v === "true").optional(),
    offset: z.coerce.number().int().nonnegative().optional(),
    limit: z.coerce.number().int().positive().max(MAX_PAGE_SIZE).optional(),
  })
  .strict();

/** Reads a query from URL search parameters; USAGE naming the parameter when one is bad. */
export function parseItemQuery(params: URLSearchParams): ItemQuery {
  const raw = Object.fromEntries([...params].filter(([, v]) => v !== ""));
  const parsed = ItemQuerySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new IterAlignError("USAGE", `item query: ${issue?.path.join(".") || "(query)"}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

// --- One item's whole trace -----------------------------------------------------------------------------------------

const AttemptRecord = z.object({ record: z.object({ prompt: z.string(), response: z.string(), finishReason: z.string(), model: z.string().nullable().optional() }) });
const VerdictRecord = z.object({
  record: z.object({
    verdict: z.object({ pass: z.boolean(), violated: z.array(z.string()), severity: z.string(), rationale: z.string() }),
    promptBenign: z.boolean().nullable().optional(),
    model: z.string().nullable().optional(),
  }),
});
const RevisionRecord = z.object({
  record: z.object({ id: z.string(), mode: z.string(), critique: z.string().nullable(), revised: z.string(), principleIds: z.array(z.string()), model: z.string().nullable().optional() }),
});
const GateVerdictRecord = z.object({
  record: z.object({ verdict: z.object({ pass: z.boolean(), rationale: z.string() }), refusal: z.boolean(), model: z.string().nullable().optional() }),
});
const GateDecisionRecord = z.object({ record: z.object({ accepted: z.boolean(), reason: z.string() }) });
const ErrorRecord = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
const IterationExamples = z.object({ status: z.literal("ok"), record: z.object({ examples: z.array(TrainingExampleSchema).default([]) }) });

export interface TraceOptions {
  /** Cut texts longer than this (the static report); default: never. */
  readonly maxChars?: number;
  /** Principle titles by id, for the revision's principles and the item's evidence. */
  readonly principleTitles?: ReadonlyMap<string, string>;
  /** Principle ids each item is evidence for. */
  readonly evidenceFor?: ReadonlyMap<string, readonly string[]>;
}

/**
 * Reads the records of items from the store and links them: attempt, verdict, revision, gate verdict, gate decision
 * and the training example (from the iteration's stored examples, read once per iteration per call).
 */
export function loadItemTraces(store: RunStore, runId: string, summaries: readonly ItemSummary[], options: TraceOptions = {}): ItemTrace[] {
  const kinds = Object.keys(STAGES) as Kind[];
  const ids = summaries.flatMap((s) => kinds.map((k) => siblingId(s.id, k)));
  const rows = new Map(store.getRecordsByIds(runId, ids).map((r) => [r.id, r]));
  const examples = new Map<number, Map<string, TrainingExample>>();
  const exampleFor = (iteration: number, revisionId: string): TrainingExample | undefined => {
    let map = examples.get(iteration);
    if (!map) {
      const marker = store.getRecord(runId, `it${iteration}:done:iteration`);
      const parsed = marker ? IterationExamples.safeParse(marker.payload) : undefined;
      map = new Map((parsed?.success ? parsed.data.record.examples : []).map((e) => [e.revisionId, e]));
      examples.set(iteration, map);
    }
    return map.get(revisionId);
  };
  return summaries.map((s) => traceOf(s, (k) => rows.get(siblingId(s.id, k)), exampleFor, options));
}

function traceOf(
  s: ItemSummary,
  row: (kind: Kind) => RecordRow | undefined,
  exampleFor: (iteration: number, revisionId: string) => TrainingExample | undefined,
  options: TraceOptions,
): ItemTrace {
  const truncated: Record<string, number> = {};
  const cut = (field: string, text: string): string => {
    if (options.maxChars === undefined || text.length <= options.maxChars) return text;
    truncated[field] = text.length;
    return text.slice(0, options.maxChars);
  };
  const errors: StageError[] = [];
  const parse = <T>(kind: Kind, schema: z.ZodType<T>): T | undefined => {
    const r = row(kind);
    if (!r) return undefined;
    if (r.status === "error") {
      const e = ErrorRecord.safeParse(r.payload);
      errors.push({ stage: STAGES[kind], code: e.success ? e.data.error.code : "UNKNOWN", message: e.success ? e.data.error.message : "error row" });
      return undefined;
    }
    const parsed = schema.safeParse(r.payload);
    return parsed.success ? parsed.data : undefined;
  };
  const attempt = parse("attempt", AttemptRecord)?.record;
  const verdict = parse("verdict", VerdictRecord)?.record;
  const revision = parse("revision", RevisionRecord)?.record;
  const gateVerdict = parse("gate-verdict", GateVerdictRecord)?.record;
  const decision = parse("gate", GateDecisionRecord)?.record;
  const titles = options.principleTitles ?? new Map<string, string>();
  const example = revision && decision?.accepted ? exampleFor(s.iteration, revision.id) : undefined;
  return {
    ...s,
    prompt: attempt ? cut("prompt", attempt.prompt) : null,
    response: attempt ? cut("response", attempt.response) : null,
    finishReason: attempt?.finishReason ?? null,
    targetModel: attempt?.model ?? null,
    judge: verdict
      ? {
          pass: verdict.verdict.pass,
          violated: verdict.verdict.violated,
          severity: verdict.verdict.severity,
          rationale: cut("rationale", verdict.verdict.rationale),
          promptBenign: verdict.promptBenign ?? null,
          model: verdict.model ?? null,
        }
      : null,
    revision: revision
      ? {
          id: revision.id,
          mode: revision.mode,
          critique: revision.critique === null ? null : cut("critique", revision.critique),
          revised: cut("revised", revision.revised),
          principles: revision.principleIds.map((id) => ({ id, title: titles.get(id) ?? id })),
          model: revision.model ?? null,
        }
      : null,
    gateVerdict: gateVerdict ? { pass: gateVerdict.verdict.pass, refusal: gateVerdict.refusal, rationale: cut("gateRationale", gateVerdict.verdict.rationale), model: gateVerdict.model ?? null } : null,
    gateDecision: decision ? { accepted: decision.accepted, reason: decision.reason } : null,
    example: example
      ? {
          id: example.id,
          messages: example.messages.map((m) => ({ role: m.role, content: cut("exampleMessages", m.content) })),
          chosen: cut("chosen", example.chosen),
          rejected: cut("rejected", example.rejected),
        }
      : null,
    evidenceFor: (options.evidenceFor?.get(s.id) ?? []).map((id) => ({ id, title: titles.get(id) ?? id })),
    errors,
    truncated,
  };
}
