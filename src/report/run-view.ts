import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { EvalSummaryFileSchema, MetricsFileSchema, SummaryFileSchema, ARTIFACT_VERSION } from "../spec/artifacts.js";
import { IterAlignError } from "../spec/errors.js";
import { PrincipleSchema, type Principle } from "../spec/records.js";
import type { RunStore } from "../store/run-store.js";
import { ItemIndex } from "./item-index.js";
import {
  REPORT_DATA_VERSION,
  type EvalBenchmarkView,
  type EvalEntryView,
  type EvalItemView,
  type IterationView,
  type ModelView,
  type PrincipleVersionView,
  type PrincipleView,
  type RunProgress,
  type RunView,
  type StageUsageView,
  type TrainingView,
} from "./types.js";

/** The loop's stages in the order they run (the pool update sits between propose and self-correct). */
export const LOOP_STAGES = ["red-team", "judge", "propose", "pool", "self-correct", "gate", "train"] as const;

const StoredConfigSchema = z.object({ config: z.unknown(), baseDir: z.string().optional(), configFile: z.string().optional() });
const MarkerSchema = z.object({ status: z.literal("ok"), record: z.record(z.string(), z.unknown()) });
const PoolValueSchema = z.object({ principles: z.array(PrincipleSchema) });
const EfficacyFiguresSchema = z.object({ uses: z.number(), trials: z.number(), fixes: z.number(), overRefusals: z.number() });
const RetireValueSchema = z.object({ cumulative: z.record(z.string(), EfficacyFiguresSchema), retired: z.array(z.object({ id: z.string(), reason: z.string() })) });
const TrainValueSchema = z.object({
  model: z.object({ model: z.string() }),
  trainer: z.string(),
  dataHash: z.string(),
  examples: z.number(),
  metrics: z
    .object({
      finalLoss: z.number().optional(),
      seconds: z.number().optional(),
      lossCurve: z.array(z.object({ step: z.number(), loss: z.number() })).optional(),
    })
    .partial()
    .passthrough()
    .optional(),
});
const SplitSchema = z.object({
  train: z.number().optional(),
  heldout: z.number().optional(),
  counts: z.record(z.string(), z.object({ train: z.number(), heldout: z.number() })).optional(),
});
const EvalReportFileSchema = z.object({
  results: z.array(
    z.object({
      benchmark: z.string(),
      mode: z.string(),
      scoringPath: z.string().optional(),
      items: z.array(
        z.object({
          id: z.string(),
          category: z.string().optional(),
          prediction: z.union([z.string(), z.number(), z.null()]),
          label: z.union([z.string(), z.number(), z.null()]),
          correct: z.boolean().optional(),
          details: z.record(z.string(), z.unknown()),
        }),
      ),
    }),
  ),
});

/** Where a run lives: its store (records, markers, config) and its directory (the files it wrote). */
export interface RunLocation {
  readonly store: RunStore;
  readonly runId: string;
  readonly runDir: string;
}

/** A run's overview, and the index of its items. */
export interface LoadedRun {
  readonly view: RunView;
  readonly index: ItemIndex;
  /** Principle ids each item is evidence for, and principle titles (for traces). */
  readonly evidenceFor: ReadonlyMap<string, readonly string[]>;
  readonly principleTitles: ReadonlyMap<string, string>;
}

/**
 * Reads a run for the report and the viewer: the store's run row, stage markers and pool snapshots, and the run
 * directory's `metrics.json`, `summary.json`, `split.json` and `eval/` files, each validated against its versioned
 * schema. A file whose version this code does not know is an error naming the file; a missing or damaged optional
 * file becomes a warning on the page. Works on a running run (what is finished so far).
 */
export function loadRun(location: RunLocation): LoadedRun {
  const { store, runId, runDir } = location;
  const run = store.getRun(runId);
  if (!run) throw new IterAlignError("STORE_NOT_FOUND", `run '${runId}' is not in the store`);
  const warnings: string[] = [];
  const stored = StoredConfigSchema.safeParse(JSON.parse(run.configJson) as unknown);
  const config = stored.success ? (stored.data.config as Record<string, unknown>) : {};

  const markers = stageMarkers(store, runId);
  const marker = (iteration: number, stage: string): Record<string, unknown> | undefined => markers.get(`it${iteration}:done:${stage}`);
  const valueOf = (id: string): unknown => {
    const row = store.getRecord(runId, id);
    const parsed = row ? MarkerSchema.safeParse(row.payload) : undefined;
    return parsed?.success ? parsed.data.record : undefined;
  };

  // Pool snapshots, iteration by iteration: each principle's versions and the active count.
  const pools: Principle[][] = [];
  // loop.efficacy / loop.retire: the run's figures per principle (latest), and what was retired, after the pool stage.
  let efficacy: Record<string, { uses: number; trials: number; fixes: number; overRefusals: number }> = {};
  const retiredReason = new Map<string, string>();
  for (let i = 0; markers.has(`it${i}:done:pool`) || markers.has(`it${i}:done:red-team`); i++) {
    const pool = markers.has(`it${i}:done:pool`) ? PoolValueSchema.safeParse(valueOf(`it${i}:done:pool`)) : undefined;
    let principles = pool?.success ? pool.data.principles : (pools[i - 1] ?? []);
    const retire = markers.has(`it${i}:done:retire`) ? RetireValueSchema.safeParse(valueOf(`it${i}:done:retire`)) : undefined;
    if (retire?.success) {
      efficacy = retire.data.cumulative;
      const retired = new Set(retire.data.retired.map((r) => r.id));
      for (const r of retire.data.retired) retiredReason.set(r.id, r.reason);
      principles = principles.map((p) => (retired.has(p.id) ? { ...p, status: "retired" as const } : p));
    }
    pools.push(principles);
  }

  const iterations: IterationView[] = [];
  for (let i = 0; ; i++) {
    const file = path.join(runDir, "iterations", String(i).padStart(3, "0"), "metrics.json");
    if (!existsSync(file)) break;
    const metrics = readArtifact(file, MetricsFileSchema);
    const stages: StageUsageView[] = LOOP_STAGES.flatMap((stage) => {
      const m = marker(i, stage);
      if (!m && metrics.itemsByStage[stage] === undefined) return [];
      return [
        {
          stage,
          items: numberOr(metrics.itemsByStage[stage], numberOr(m?.items, 0)),
          errors: numberOr(metrics.errorsByStage[stage], 0),
          seconds: numberOrNull(m?.seconds),
          promptTokens: numberOrNull(m?.promptTokens),
          completionTokens: numberOrNull(m?.completionTokens),
          calls: numberOrNull(m?.calls),
          costUsd: numberOr(metrics.costByStage[stage], 0),
        },
      ];
    });
    const train = TrainValueSchema.safeParse(markers.has(`it${i}:done:train`) ? valueOf(`it${i}:done:train`) : undefined);
    const training: TrainingView | undefined = train.success
      ? {
          trainer: train.data.trainer,
          examples: train.data.examples,
          model: train.data.model.model,
          dataHash: train.data.dataHash,
          ...(train.data.metrics?.finalLoss !== undefined ? { finalLoss: train.data.metrics.finalLoss } : {}),
          ...(train.data.metrics?.seconds !== undefined ? { seconds: train.data.metrics.seconds } : {}),
          ...(train.data.metrics?.lossCurve ? { lossCurve: train.data.metrics.lossCurve } : {}),
        }
      : undefined;
    const { version: _version, ...rest } = metrics;
    iterations.push({
      iteration: i,
      metrics: rest,
      stages,
      activePrinciples: (pools[i] ?? []).filter((p) => p.status === "active").length,
      ...(training ? { training } : {}),
    });
  }

  const summaryFile = path.join(runDir, "summary.json");
  const summary = existsSync(summaryFile) ? readArtifact(summaryFile, SummaryFileSchema) : undefined;
  const split = readOptional(path.join(runDir, "split.json"), SplitSchema, warnings);

  const principles = principleViews(pools);
  const evidenceFor = new Map<string, string[]>();
  for (const p of principles) for (const item of p.evidence) evidenceFor.set(item, [...(evidenceFor.get(item) ?? []), p.id]);
  const index = new ItemIndex(store, runId, new Map(principles.map((p) => [p.id, p.evidence])));
  const use = index.principleUse();
  const withUse = principles.map((p) => {
    const e = efficacy[p.id];
    const reason = retiredReason.get(p.id);
    return {
      ...p,
      revisions: use.get(p.id)?.revised ?? 0,
      accepted: use.get(p.id)?.accepted ?? 0,
      ...(e ? { efficacy: { uses: e.uses, trials: e.trials, fixes: e.fixes, overRefusals: e.overRefusals } } : {}),
      ...(reason !== undefined ? { retiredReason: reason } : {}),
    };
  });

  const evalEntries = readEvalEntries(runDir);
  const stageTotals = sumStages(iterations);
  const view: RunView = {
    version: REPORT_DATA_VERSION,
    runId,
    status: run.status,
    createdAt: run.createdAt,
    finishedAt: run.finishedAt,
    error: run.error,
    stopReason: summary?.stopReason ?? null,
    calibration: summary?.calibration ?? null,
    config: redactSecrets(config),
    configHash: run.configHash,
    models: modelViews(config),
    trainer: stringOr((config.train as { trainer?: unknown } | undefined)?.trainer, "none"),
    split: { train: split?.train ?? null, heldout: split?.heldout ?? null, counts: split?.counts ?? {} },
    iterations,
    stageTotals,
    totals: {
      items: iterations.reduce((n, it) => n + it.metrics.attempts, 0),
      errors: iterations.reduce((n, it) => n + it.metrics.errors, 0),
      promptTokens: stageTotals.reduce((n, s) => n + (s.promptTokens ?? 0), 0),
      completionTokens: stageTotals.reduce((n, s) => n + (s.completionTokens ?? 0), 0),
      seconds: stageTotals.reduce((n, s) => n + (s.seconds ?? 0), 0),
      costUsd: iterations.reduce((n, it) => n + it.metrics.costUsd, 0),
    },
    principles: withUse,
    eval: { entries: evalEntries, benchmarks: evalBenchmarks(runDir, evalEntries, warnings) },
    warnings,
  };
  const principleTitles = new Map(principles.map((p) => [p.id, p.title]));
  return { view, index, evidenceFor, principleTitles };
}

/** The items of one benchmark of one evaluation (`eval/<label>/eval.json`). */
export function loadEvalItems(runDir: string, label: string, benchmark: string): EvalItemView[] {
  if (!/^[A-Za-z0-9._-]+$/.test(label)) throw new IterAlignError("USAGE", `'${label}' is not an evaluation label`);
  const file = path.join(runDir, "eval", label, "eval.json");
  if (!existsSync(file)) throw new IterAlignError("STORE_NOT_FOUND", `no evaluation '${label}' in ${runDir}`);
  const report = readArtifact(file, EvalReportFileSchema);
  const result = report.results.find((r) => r.benchmark === benchmark);
  if (!result) throw new IterAlignError("STORE_NOT_FOUND", `evaluation '${label}' has no benchmark '${benchmark}'`);
  return result.items;
}

/** Where a running run is: its records' revision and the stages finished so far (from the stages' markers). */
export function runProgress(store: RunStore, runId: string): RunProgress {
  const run = store.getRun(runId);
  if (!run) throw new IterAlignError("STORE_NOT_FOUND", `run '${runId}' is not in the store`);
  const stages: Array<RunProgress["stages"][number]> = [];
  let iterations = 0;
  for (const [id, r] of stageMarkers(store, runId)) {
    const m = /^it(\d+):done:(.+)$/.exec(id);
    if (!m) continue;
    const stage = m[2] as string;
    const iteration = Number(m[1]);
    if (stage === "iteration") iterations = Math.max(iterations, iteration + 1);
    if (!(LOOP_STAGES as readonly string[]).includes(stage)) continue;
    stages.push({ iteration, stage, items: numberOr(r.items, 0), errors: numberOr(r.errors, 0), seconds: numberOrNull(r.seconds) });
  }
  return { runId, status: run.status, revision: store.recordsRevision(runId), iterations, stages };
}

/** Markers whose payloads are values (pools, iterations with every example, evaluations): listed, never decoded here. */
const VALUE_MARKER = /:done:(pool|iteration|train|eval:.*|train:.*)$/;

/**
 * Every marker of a run by id: a stage marker's numbers (time, tokens, items); an empty record for the value
 * markers, which are large (an iteration's marker holds all its training examples) and read only when needed.
 */
function stageMarkers(store: RunStore, runId: string): Map<string, Record<string, unknown>> {
  const ids = store.recordFields({ runId, stages: ["marker"], fields: {} }).map((r) => r.id);
  const markers = new Map<string, Record<string, unknown>>(ids.map((id) => [id, {}]));
  for (const row of store.getRecordsByIds(runId, ids.filter((id) => !VALUE_MARKER.test(id)))) {
    const parsed = MarkerSchema.safeParse(row.payload);
    if (parsed.success) markers.set(row.id, parsed.data.record);
  }
  return markers;
}

/** Reads and validates a run artifact; an unknown version or a damaged file is DATA_INVALID naming the file. */
export function readArtifact<T>(file: string, schema: z.ZodType<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new IterAlignError("DATA_INVALID", `${file}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const version = typeof raw === "object" && raw !== null ? (raw as { version?: unknown }).version : undefined;
  if (typeof version === "number" && version > ARTIFACT_VERSION) {
    throw new IterAlignError("DATA_INVALID", `${file}: version ${version} is newer than this iteralign reads (${ARTIFACT_VERSION}); upgrade iteralign`, {
      details: { file, version },
    });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new IterAlignError("DATA_INVALID", `${file}: ${z.prettifyError(parsed.error)}`, { details: { file } });
  return parsed.data;
}

function readOptional<T>(file: string, schema: z.ZodType<T>, warnings: string[]): T | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return readArtifact(file, schema);
  } catch (err) {
    warnings.push((err as Error).message);
    return undefined;
  }
}

function readEvalEntries(runDir: string): EvalEntryView[] {
  const file = path.join(runDir, "eval", "summary.json");
  if (!existsSync(file)) return [];
  return readArtifact(file, EvalSummaryFileSchema).entries;
}

function evalBenchmarks(runDir: string, entries: readonly EvalEntryView[], warnings: string[]): EvalBenchmarkView[] {
  const dir = path.join(runDir, "eval");
  const labels = entries.map((e) => e.label);
  const extra = existsSync(dir) ? readdirSync(dir).filter((d) => !labels.includes(d) && existsSync(path.join(dir, d, "eval.json"))) : [];
  return [...labels, ...extra].flatMap((label) => {
    const report = readOptional(path.join(dir, label, "eval.json"), EvalReportFileSchema, warnings);
    return (report?.results ?? []).map((r) => ({ label, benchmark: r.benchmark, mode: r.mode, ...(r.scoringPath ? { scoringPath: r.scoringPath } : {}), items: r.items.length }));
  });
}

/** Each principle across the pool snapshots: its latest state and every distinct version. */
function principleViews(pools: readonly Principle[][]): Array<Omit<PrincipleView, "revisions" | "accepted">> {
  const versions = new Map<string, PrincipleVersionView[]>();
  const latest = new Map<string, Principle>();
  pools.forEach((pool, iteration) => {
    for (const p of pool) {
      latest.set(p.id, p);
      const list = versions.get(p.id) ?? [];
      const last = list[list.length - 1];
      if (!last || last.version !== p.version || last.text !== p.text || last.status !== p.status || last.title !== p.title) {
        list.push({ version: p.version, iteration, title: p.title, text: p.text, status: p.status });
      }
      versions.set(p.id, list);
    }
  });
  const mergedInto = new Map<string, string>();
  for (const p of latest.values()) for (const from of p.mergedFrom) if (from !== p.id) mergedInto.set(from, p.id);
  return [...latest.values()].map((p) => ({
    id: p.id,
    title: p.title,
    text: p.text,
    status: p.status,
    source: p.source,
    firstIteration: p.firstIteration,
    versions: versions.get(p.id) ?? [],
    evidence: p.evidence,
    mergedFrom: p.mergedFrom,
    ...(mergedInto.has(p.id) ? { mergedInto: mergedInto.get(p.id) } : {}),
  }));
}

function sumStages(iterations: readonly IterationView[]): StageUsageView[] {
  const totals = new Map<string, { items: number; errors: number; seconds: number | null; promptTokens: number | null; completionTokens: number | null; calls: number | null; costUsd: number }>();
  const add = (a: number | null, b: number | null): number | null => (a === null && b === null ? null : (a ?? 0) + (b ?? 0));
  for (const it of iterations) {
    for (const s of it.stages) {
      const t = totals.get(s.stage) ?? { items: 0, errors: 0, seconds: null, promptTokens: null, completionTokens: null, calls: null, costUsd: 0 };
      totals.set(s.stage, {
        items: t.items + s.items,
        errors: t.errors + s.errors,
        seconds: add(t.seconds, s.seconds),
        promptTokens: add(t.promptTokens, s.promptTokens),
        completionTokens: add(t.completionTokens, s.completionTokens),
        calls: add(t.calls, s.calls),
        costUsd: t.costUsd + s.costUsd,
      });
    }
  }
  return [...totals].map(([stage, t]) => ({ stage, ...t }));
}

function modelViews(config: Record<string, unknown>): ModelView[] {
  const models = (config.models ?? {}) as Record<string, { provider?: unknown; model?: unknown }>;
  const roles = (config.roles ?? {}) as Record<string, unknown>;
  const roleOf = (name: string): string[] => {
    const bound = Object.entries(roles).filter(([, n]) => n === name || (Array.isArray(n) && n.includes(name))).map(([role]) => (role === "judges" ? "judge (panel)" : role));
    // The judge is the oracle unless a judge is named.
    if (roles.judge === undefined && roles.oracle === name) bound.push("judge");
    return bound;
  };
  return Object.entries(models).map(([name, m]) => ({ name, provider: stringOr(m.provider, "?"), model: stringOr(m.model, "?"), roles: roleOf(name) }));
}

const SECRET_KEY = /(api[-_]?key|token|secret|password|authorization|cookie)$/i;

/**
 * The config as the page shows it: header values and any field named like a secret (apiKey, token, ...) are
 * replaced by `<redacted>`. `apiKeyEnv` names a variable, not a key, and is kept.
 */
export function redactSecrets(value: unknown, key = ""): unknown {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v));
  if (typeof value !== "object" || value === null) {
    return typeof value === "string" && SECRET_KEY.test(key) && key !== "apiKeyEnv" ? "<redacted>" : value;
  }
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([k, v]) => {
      if (k === "headers" && typeof v === "object" && v !== null) return [k, Object.fromEntries(Object.keys(v).map((h) => [h, "<redacted>"]))];
      return [k, redactSecrets(v, k)];
    }),
  );
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === "string" ? value : fallback;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
