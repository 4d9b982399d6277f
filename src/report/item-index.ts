import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { TrainingExampleSchema, type TrainingExample } from "../spec/records.js";
import type { RecordRow, RunStore } from "../store/run-store.js";
import { itemMatcher, MAX_PAGE_SIZE, PAGE_SIZE } from "./item-filter.js";
import type { ItemFacets, ItemPage, ItemQuery, ItemStage, ItemSummary, ItemTrace, StageError } from "./types.js";

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

type Entry = ItemSummary;

/**
 * Every red-team attempt of a run with what the later stages made of it, built from the store with one scan per
 * stage that reads a few fields of each record (not the whole payloads), then filtered and paged in memory. About
 * 100 bytes per item plus the prompt's start: a 100,000-item run fits comfortably.
 */
export class ItemIndex {
  private constructor(
    private readonly entries: readonly Entry[],
    /** Item ids each principle is evidence for. */
    private readonly evidence: ReadonlyMap<string, ReadonlySet<string>>,
    readonly revision: number,
  ) {}

  /** Builds the index of a run; `evidence` maps principle ids to the item ids that motivated them. */
  static build(store: RunStore, runId: string, evidence: ReadonlyMap<string, readonly string[]> = new Map()): ItemIndex {
    const revision = store.recordsRevision(runId);
    const rows = store.recordFields({
      runId,
      stages: Object.values(STAGES),
      fields: {
        promptId: "$.record.promptId",
        category: "$.record.category",
        prompt: { path: "$.record.prompt", maxChars: PROMPT_START_CHARS },
        pass: "$.record.verdict.pass",
        accepted: "$.record.accepted",
        reason: "$.record.reason",
        principleIds: "$.record.principleIds",
      },
    });
    const attempts = new Map<string, Partial<Entry> & { id: string; iteration: number; promptId: string }>();
    const byKey = new Map<string, Array<(typeof rows)[number] & { kind: Kind }>>();
    for (const row of rows) {
      const m = RECORD_ID.exec(row.id);
      if (!m) continue;
      const kind = m[2] as Kind;
      if (!(kind in STAGES)) continue;
      const key = `${m[1]}:${m[3]}`;
      if (kind === "attempt") {
        const promptId = typeof row.values.promptId === "string" ? row.values.promptId : (m[3] as string);
        attempts.set(key, {
          id: row.id,
          iteration: Number(m[1]),
          promptId,
          dataset: promptId.includes(":") ? promptId.slice(0, promptId.indexOf(":")) : promptId,
          category: typeof row.values.category === "string" ? row.values.category : null,
          promptStart: typeof row.values.prompt === "string" ? row.values.prompt : "",
          hasError: row.status === "error",
        });
      } else {
        const list = byKey.get(key) ?? [];
        list.push({ ...row, kind });
        byKey.set(key, list);
      }
    }
    const entries: Entry[] = [];
    for (const [key, a] of attempts) {
      let verdict: ItemSummary["verdict"] = null;
      let stage: ItemStage = "red-team";
      let gate: string | null = null;
      let hasError = a.hasError ?? false;
      let principleIds: readonly string[] = [];
      for (const row of byKey.get(key) ?? []) {
        if (row.status === "error") hasError = true;
        if (row.kind === "verdict") {
          verdict = row.status === "error" ? "error" : row.values.pass === true ? "pass" : "fail";
          if (stage === "red-team") stage = "judge";
        } else if (row.kind === "revision") {
          if (stage === "red-team" || stage === "judge") stage = "self-correct";
          if (Array.isArray(row.values.principleIds)) principleIds = row.values.principleIds.filter((p): p is string => typeof p === "string");
        } else if (row.kind === "gate-verdict") {
          if (row.status === "error") gate = "error";
        } else if (row.kind === "gate") {
          const accepted = row.values.accepted === true;
          stage = accepted ? "exported" : "gate";
          gate = accepted ? "accepted" : typeof row.values.reason === "string" ? row.values.reason : "rejected";
        }
      }
      if (gate === "error" && stage !== "exported") stage = "gate";
      entries.push({
        id: a.id,
        iteration: a.iteration,
        promptId: a.promptId,
        dataset: a.dataset ?? "",
        category: a.category ?? null,
        promptStart: a.promptStart ?? "",
        verdict,
        stage,
        gate,
        hasError,
        principleIds,
      });
    }
    const evidenceSets = new Map([...evidence].map(([p, ids]) => [p, new Set(ids)] as const));
    return new ItemIndex(entries, evidenceSets, revision);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Item ids whose revision used a principle, and the subset the gate accepted. */
  revisionsUsing(principleId: string): { revised: string[]; accepted: string[] } {
    const revised = this.entries.filter((e) => e.principleIds.includes(principleId));
    return { revised: revised.map((e) => e.id), accepted: revised.filter((e) => e.gate === "accepted").map((e) => e.id) };
  }

  summary(id: string): ItemSummary | undefined {
    return this.entries.find((x) => x.id === id);
  }

  /** Every item, in run order (the static report embeds them all). */
  all(): readonly ItemSummary[] {
    return this.entries;
  }

  facets(): ItemFacets {
    const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();
    return {
      iterations: [...new Set(this.entries.map((e) => e.iteration))].sort((a, b) => a - b),
      datasets: sorted(this.entries.map((e) => e.dataset)),
      categories: sorted(this.entries.flatMap((e) => (e.category === null ? [] : [e.category]))),
      gates: sorted(this.entries.flatMap((e) => (e.gate === null ? [] : [e.gate]))),
    };
  }

  query(query: ItemQuery): ItemPage {
    const offset = Math.max(0, Math.floor(query.offset ?? 0));
    const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(query.limit ?? PAGE_SIZE)));
    const matches = this.entries.filter(itemMatcher(query, this.evidence));
    return { total: matches.length, offset, limit, items: matches.slice(offset, offset + limit), facets: this.facets() };
  }
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
