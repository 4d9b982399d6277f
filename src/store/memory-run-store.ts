import type { BatchJob, CallRecord } from "../spec/call-log.js";
import {
  assertWritable,
  checkRelease,
  decodeCall,
  decodeRecord,
  decodeRun,
  encodeCall,
  encodeNewRun,
  encodeRecord,
  encodeStatus,
  finishCallStats,
  normalizeRecordQuery,
  recordMatches,
  resolveClaim,
  runNotFound,
  storeClosed,
  storeConflict,
  validatePid,
  type CallStats,
  type CallStatsQuery,
  type ClaimResult,
  type NewRun,
  type PayloadOptions,
  type RecordQuery,
  type RecordRow,
  type RunRow,
  type RunStatus,
  type RunStatusOptions,
  type RunStore,
  type StoredCall,
  type StoredRecord,
  type StoredRun,
  decodeBatchJob,
  encodeBatchJob,
  fieldPath,
  readJsonPath,
  validateFieldPaths,
  applyToItemIndex,
  datasetOf,
  itemStage,
  type ItemFacetValues,
  type ItemIndexEntry,
  type ItemIndexFilter,
  type ItemIndexRow,
  type RecordFieldsQuery,
  type RecordFieldsRow,
  type StoredBatchJob,
} from "./run-store.js";

/**
 * RunStore kept in Maps, for tests and runs that need no persistence. Rows are held in their stored
 * form (JSON columns as text) and decoded on read exactly as SqliteRunStore does, so the two behave
 * alike and callers never share mutable objects with the store.
 */
export class MemoryRunStore implements RunStore {
  private readonly runs = new Map<string, StoredRun>();
  private readonly calls: StoredCall[] = [];
  private readonly newestCall = new Map<string, StoredCall>();
  /** Insertion-ordered records, keyed by run then id. */
  private readonly records = new Map<string, Map<string, StoredRecord>>();
  /** Each run's item index (what migration 0005's triggers keep in SQLite), and the insertion counter. */
  private readonly items = new Map<string, Map<string, ItemIndexEntry>>();
  private seq = 0;
  /** Writes to each run's records, for {@link recordsRevision}. */
  private readonly revisions = new Map<string, number>();
  private readonly batchJobs = new Map<string, StoredBatchJob>();
  private readonly batchOrder: string[] = [];
  private closed = false;

  createRun(run: NewRun): RunRow {
    const stored = encodeNewRun(run);
    this.live();
    if (this.runs.has(stored.id)) throw storeConflict(`run "${stored.id}" already exists`, { runId: stored.id });
    this.runs.set(stored.id, stored);
    return decodeRun(stored);
  }

  getRun(id: string): RunRow | undefined {
    this.live();
    const stored = this.runs.get(id);
    return stored === undefined ? undefined : decodeRun(stored);
  }

  listRuns(): RunRow[] {
    this.live();
    return [...this.runs.values()].map(decodeRun);
  }

  updateRunStatus(id: string, status: RunStatus, options: RunStatusOptions = {}): RunRow {
    const change = encodeStatus(status, options);
    const run = this.requireRun(id);
    assertWritable(run);
    return this.replaceRun({ ...run, ...change });
  }

  claimRun(id: string, ownerPid: number): ClaimResult {
    const pid = validatePid(ownerPid);
    const run = this.requireRun(id);
    const takenOverFrom = resolveClaim(run, pid);
    return { run: this.replaceRun({ ...run, ownerPid: pid }), takenOverFrom };
  }

  releaseRun(id: string, ownerPid: number): RunRow {
    const pid = validatePid(ownerPid);
    const run = this.requireRun(id);
    return checkRelease(run, pid) ? this.replaceRun({ ...run, ownerPid: null }) : run;
  }

  getCall(key: string): CallRecord | undefined {
    this.live();
    const stored = this.newestCall.get(key);
    return stored === undefined ? undefined : decodeCall(stored);
  }

  putCall(record: CallRecord): void {
    const stored = encodeCall(record);
    this.live();
    this.calls.push(stored);
    this.newestCall.set(stored.key, stored);
  }

  callStats(query: CallStatsQuery = {}): CallStats {
    this.live();
    const groups = new Map<string, { provider: string; modelId: string; kind: string; calls: number } & Sums>();
    for (const c of this.calls) {
      if (query.runId !== undefined && c.runId !== query.runId) continue;
      const groupKey = JSON.stringify([c.provider, c.modelId, c.kind]);
      let g = groups.get(groupKey);
      if (g === undefined) {
        g = { provider: c.provider, modelId: c.modelId, kind: c.kind, calls: 0, promptTokens: 0, completionTokens: 0, latencyMs: 0, costUsd: 0 };
        groups.set(groupKey, g);
      }
      g.calls += 1;
      g.promptTokens += c.promptTokens;
      g.completionTokens += c.completionTokens;
      g.latencyMs += c.latencyMs;
      g.costUsd += c.costUsd;
    }
    return finishCallStats([...groups.values()]);
  }

  putRecords(rows: readonly RecordRow[]): void {
    const stored = rows.map(encodeRecord);
    this.live();
    // Check everything before touching anything, which is what makes the batch all-or-nothing.
    for (const runId of new Set(stored.map((r) => r.runId))) assertWritable(this.requireRun(runId));
    const seen = new Set<string>();
    for (const row of stored) {
      const batchKey = JSON.stringify([row.runId, row.id]);
      if (seen.has(batchKey) || this.records.get(row.runId)?.has(row.id) === true) {
        throw storeConflict(`record "${row.id}" already exists in run "${row.runId}"`, { runId: row.runId, id: row.id });
      }
      seen.add(batchKey);
    }
    for (const row of stored) {
      let byId = this.records.get(row.runId);
      if (byId === undefined) {
        byId = new Map();
        this.records.set(row.runId, byId);
      }
      byId.set(row.id, row);
      this.revisions.set(row.runId, (this.revisions.get(row.runId) ?? 0) + 1);
      this.indexItem(row, "insert");
    }
  }

  private indexItem(row: StoredRecord, op: "insert" | "delete"): void {
    let index = this.items.get(row.runId);
    if (!index) {
      index = new Map();
      this.items.set(row.runId, index);
    }
    applyToItemIndex(index, row, op, ++this.seq);
  }

  replaceRecords(runId: string, remove: readonly string[], rows: readonly RecordRow[]): void {
    const stored = rows.map(encodeRecord);
    this.live();
    assertWritable(this.requireRun(runId));
    const removing = new Set(remove);
    const byId = this.records.get(runId) ?? new Map<string, StoredRecord>();
    const seen = new Set<string>();
    for (const row of stored) {
      if (row.runId !== runId) throw storeConflict(`record "${row.id}" belongs to run "${row.runId}", not "${runId}"`, { runId, id: row.id });
      if (seen.has(row.id) || (byId.has(row.id) && !removing.has(row.id))) {
        throw storeConflict(`record "${row.id}" already exists in run "${runId}"`, { runId, id: row.id });
      }
      seen.add(row.id);
    }
    for (const id of removing) {
      const old = byId.get(id);
      if (old) this.indexItem(old, "delete");
      byId.delete(id);
    }
    for (const row of stored) {
      byId.set(row.id, row);
      this.indexItem(row, "insert");
    }
    this.records.set(runId, byId);
    this.revisions.set(runId, (this.revisions.get(runId) ?? 0) + 1);
  }

  putBatchJob(job: BatchJob): void {
    const stored = encodeBatchJob(job);
    this.live();
    const existing = this.batchJobs.get(stored.id);
    // Like the SQLite upsert: the first insert's provider, endpoint, ids and creation time are kept.
    this.batchJobs.set(stored.id, existing ? { ...existing, externalId: stored.externalId, inputRef: stored.inputRef, status: stored.status, updatedAt: stored.updatedAt } : stored);
    if (!existing) this.batchOrder.push(stored.id);
  }

  listBatchJobs(provider: string): BatchJob[] {
    this.live();
    return [...this.batchOrder]
      .reverse()
      .map((id) => this.batchJobs.get(id) as StoredBatchJob)
      .filter((job) => job.provider === provider)
      .map(decodeBatchJob);
  }

  getRecords(query: RecordQuery): RecordRow[];
  getRecords<P>(query: RecordQuery, options: PayloadOptions<P>): RecordRow<P>[];
  getRecords<P>(query: RecordQuery, options?: PayloadOptions<P>): RecordRow<P>[] {
    const q = normalizeRecordQuery(query);
    this.live();
    const rows = [...(this.records.get(q.runId)?.values() ?? [])];
    return rows.filter((row) => recordMatches(row, q)).map((row) => decodeRecord(row, options?.payload));
  }

  getRecord(runId: string, id: string): RecordRow | undefined;
  getRecord<P>(runId: string, id: string, options: PayloadOptions<P>): RecordRow<P> | undefined;
  getRecord<P>(runId: string, id: string, options?: PayloadOptions<P>): RecordRow<P> | undefined {
    this.live();
    const stored = this.records.get(runId)?.get(id);
    return stored === undefined ? undefined : decodeRecord(stored, options?.payload);
  }

  getRecordsByIds(runId: string, ids: readonly string[]): RecordRow[] {
    this.live();
    const records = this.records.get(runId);
    return ids.flatMap((id) => {
      const stored = records?.get(id);
      return stored === undefined ? [] : [decodeRecord(stored)];
    });
  }

  recordFields(query: RecordFieldsQuery): RecordFieldsRow[] {
    this.live();
    validateFieldPaths(query.fields);
    const stages = new Set(query.stages);
    return [...(this.records.get(query.runId)?.values() ?? [])]
      .filter((row) => stages.has(row.stage))
      .map((row) => {
        const payload = JSON.parse(row.payload) as unknown;
        return {
          id: row.id,
          stage: row.stage,
          iteration: row.iteration,
          status: row.status,
          values: Object.fromEntries(
            Object.entries(query.fields).map(([name, spec]) => {
              const value = readJsonPath(payload, fieldPath(spec));
              if (typeof spec === "string" || value === null) return [name, value];
              return [name, (typeof value === "string" ? value : JSON.stringify(value)).slice(0, spec.maxChars)];
            }),
          ),
        };
      });
  }

  queryItems(runId: string, filter: ItemIndexFilter, page: { readonly offset: number; readonly limit: number }): { total: number; rows: ItemIndexRow[] } {
    this.live();
    const text = filter.text?.trim().toLowerCase();
    const evidence = new Set(filter.principle?.evidence ?? []);
    const rows = [...(this.items.get(runId)?.values() ?? [])]
      .filter((e): e is ItemIndexEntry & { attemptId: string; attemptSeq: number } => e.attemptId !== null && e.attemptSeq !== null)
      .sort((a, b) => a.attemptSeq - b.attemptSeq)
      .map(
        (e): ItemIndexRow => ({
          attemptId: e.attemptId,
          iteration: e.iteration,
          promptId: e.promptId ?? "",
          dataset: datasetOf(e.promptId ?? ""),
          category: e.category,
          promptStart: e.promptStart ?? "",
          verdict: e.verdict,
          revised: e.revised,
          principleIds: e.principleIds ?? [],
          gate: e.gate,
          errors: e.errors,
          stage: itemStage(e),
        }),
      )
      .filter(
        (r) =>
          (filter.id === undefined || r.attemptId === filter.id) &&
          (filter.iteration === undefined || r.iteration === filter.iteration) &&
          (filter.stage === undefined || r.stage === filter.stage) &&
          (filter.verdict === undefined || (filter.verdict === "none" ? r.verdict === null : r.verdict === filter.verdict)) &&
          (filter.gate === undefined || r.gate === filter.gate) &&
          (filter.dataset === undefined || r.dataset === filter.dataset) &&
          (filter.category === undefined || r.category === filter.category) &&
          (filter.errors === undefined || r.errors > 0 === filter.errors) &&
          (filter.revised === undefined || r.revised === filter.revised) &&
          (text === undefined || text === "" || r.promptStart.toLowerCase().includes(text) || r.attemptId.toLowerCase().includes(text)) &&
          (filter.principle === undefined || r.principleIds.includes(filter.principle.id) || evidence.has(r.attemptId)),
      );
    return { total: rows.length, rows: rows.slice(Math.max(0, page.offset), Math.max(0, page.offset) + Math.max(0, page.limit)) };
  }

  itemFacets(runId: string): ItemFacetValues {
    this.live();
    const all = this.queryItems(runId, {}, { offset: 0, limit: Number.MAX_SAFE_INTEGER }).rows;
    const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();
    return {
      iterations: [...new Set(all.map((r) => r.iteration))].sort((a, b) => a - b),
      datasets: sorted(all.map((r) => r.dataset)),
      categories: sorted(all.flatMap((r) => (r.category === null ? [] : [r.category]))),
      gates: sorted(all.flatMap((r) => (r.gate === null ? [] : [r.gate]))),
    };
  }

  principleUse(runId: string): Array<{ principleId: string; revised: number; accepted: number }> {
    this.live();
    const use = new Map<string, { revised: number; accepted: number }>();
    for (const row of this.queryItems(runId, { revised: true }, { offset: 0, limit: Number.MAX_SAFE_INTEGER }).rows) {
      for (const id of row.principleIds) {
        const u = use.get(id) ?? { revised: 0, accepted: 0 };
        u.revised++;
        if (row.gate === "accepted") u.accepted++;
        use.set(id, u);
      }
    }
    return [...use].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([principleId, u]) => ({ principleId, ...u }));
  }

  recordsRevision(runId: string): number {
    this.live();
    return this.revisions.get(runId) ?? 0;
  }

  close(): void {
    this.closed = true;
    this.runs.clear();
    this.calls.length = 0;
    this.newestCall.clear();
    this.records.clear();
  }

  private live(): void {
    if (this.closed) throw storeClosed();
  }

  private requireRun(id: string): RunRow {
    this.live();
    const stored = this.runs.get(id);
    if (stored === undefined) throw runNotFound(id);
    return decodeRun(stored);
  }

  private replaceRun(run: StoredRun): RunRow {
    this.runs.set(run.id, run);
    return decodeRun(run);
  }
}

interface Sums {
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  costUsd: number;
}
