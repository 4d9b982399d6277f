import { z } from "zod";
import { BatchJobSchema, CallKindSchema, CallRecordSchema, type BatchJob, type BatchJobLog, type CallKind, type CallLog, type CallRecord } from "../spec/call-log.js";
import { IterAlignError } from "../spec/errors.js";

/** Lifecycle of a run. A run starts `running`; `interrupted` marks one whose process went away. */
export const RunStatusSchema = z.enum(["running", "finished", "failed", "interrupted"]);
export type RunStatus = z.infer<typeof RunStatusSchema>;

/** Outcome of one record: `error` rows keep failures visible instead of silently dropping them. */
export const RecordStatusSchema = z.enum(["ok", "error"]);
export type RecordStatus = z.infer<typeof RecordStatusSchema>;

const PidSchema = z.number().int().positive();
const JsonTextSchema = z.string().refine(isJsonText, "must be valid JSON text");

/** What `createRun` needs. `configJson` is the resolved config as JSON text; `configHash` its digest. */
export const NewRunSchema = z.object({
  id: z.string().min(1),
  configJson: JsonTextSchema,
  configHash: z.string().min(1),
  createdAt: z.string().min(1),
});
export type NewRun = z.infer<typeof NewRunSchema>;

/** A stored run. `ownerPid` is the process holding the run's lease, or null when nobody does. */
export const RunRowSchema = NewRunSchema.extend({
  status: RunStatusSchema,
  finishedAt: z.string().nullable(),
  error: z.string().nullable(),
  ownerPid: PidSchema.nullable(),
});
export type RunRow = z.infer<typeof RunRowSchema>;

/** Optional fields set together with a new run status; omitted ones are cleared. */
export interface RunStatusOptions {
  finishedAt?: string;
  error?: string;
}

/** Result of `claimRun`: the run as now held, and the dead process it was taken from, if any. */
export interface ClaimResult {
  run: RunRow;
  takenOverFrom: number | null;
}

/**
 * One record of the loop (a red-team prompt, a judgement, a constitution, ...). The table is generic:
 * `kind` says what `payload` holds, and readers narrow `payload` with a zod schema.
 */
export const RecordRowSchema = z.object({
  runId: z.string().min(1),
  id: z.string().min(1),
  stage: z.string().min(1),
  iteration: z.number().int().nonnegative().nullable(),
  kind: z.string().min(1),
  parentIds: z.array(z.string().min(1)),
  model: z.string().nullable(),
  promptHash: z.string().nullable(),
  status: RecordStatusSchema,
  payload: z.json(),
  createdAt: z.string().min(1),
});

/** A record row whose payload has type `P` (`unknown` until a schema has checked it). */
export type RecordRow<P = unknown> = Omit<z.infer<typeof RecordRowSchema>, "payload"> & { payload: P };

/** Filters for `getRecords`. `iteration: null` selects records that belong to no iteration. */
export const RecordQuerySchema = z.object({
  runId: z.string().min(1),
  stage: z.string().min(1).optional(),
  iteration: z.number().int().nonnegative().nullable().optional(),
  status: RecordStatusSchema.optional(),
});
export type RecordQuery = z.infer<typeof RecordQuerySchema>;

/** Checks and types record payloads on read. */
export interface PayloadOptions<P> {
  payload: z.ZodType<P>;
}

/** Filters for `callStats`; without `runId` every recorded call counts. */
export interface CallStatsQuery {
  runId?: string;
}

/** Summed accounting of model calls. */
export interface CallTotals {
  calls: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  /** Dollars at the models' prices. */
  costUsd: number;
}

/** Totals of the calls to one provider/model of one kind. */
export interface CallStatsGroup extends CallTotals {
  provider: string;
  modelId: string;
  kind: CallKind;
}

/** What `callStats` returns: groups sorted by provider, modelId, kind, plus their sum. */
export interface CallStats {
  total: CallTotals;
  groups: CallStatsGroup[];
}

/**
 * Durable state of IterAlign runs: the runs themselves with their leases, the model-call log
 * (response cache and accounting) and the loop's records.
 *
 * Writes to a run (`updateRunStatus`, `putRecords`) are refused with STORE_CONFLICT while another
 * live process holds its lease, so two processes cannot interleave work on one run.
 * Invalid arguments raise USAGE; rows that fail to decode raise STORE_CORRUPT.
 */
export interface RunStore extends CallLog, BatchJobLog {
  /** Creates a `running`, unowned run. STORE_CONFLICT when the id exists. */
  createRun(run: NewRun): RunRow;
  getRun(id: string): RunRow | undefined;
  /** All runs in creation order. */
  listRuns(): RunRow[];
  /** Sets the status; `finishedAt`/`error` are replaced by the given values (null when omitted). */
  updateRunStatus(id: string, status: RunStatus, options?: RunStatusOptions): RunRow;
  /**
   * Gives the run's lease to `ownerPid`. Re-claiming one's own lease is a no-op; a lease held by a
   * dead process is taken over; one held by another live process raises STORE_CONFLICT.
   */
  claimRun(id: string, ownerPid: number): ClaimResult;
  /** Drops the lease held by `ownerPid`; STORE_CONFLICT when another process holds it. */
  releaseRun(id: string, ownerPid: number): RunRow;
  /** Token and latency totals grouped by provider, modelId and kind. */
  callStats(query?: CallStatsQuery): CallStats;
  /** Inserts all rows or none. STORE_NOT_FOUND for an unknown run, STORE_CONFLICT for a taken (runId, id). */
  putRecords(rows: readonly RecordRow[]): void;
  /**
   * Deletes the records `remove` names (ids that do not exist are ignored) and inserts `rows` after every
   * other record of the run, all or nothing. How a stage's error rows are replaced by their retried results.
   * Every row must belong to `runId`; STORE_CONFLICT when a row's id is taken and not removed.
   */
  replaceRecords(runId: string, remove: readonly string[], rows: readonly RecordRow[]): void;
  /** Matching records in insertion order. */
  getRecords(query: RecordQuery): RecordRow[];
  getRecords<P>(query: RecordQuery, options: PayloadOptions<P>): RecordRow<P>[];
  getRecord(runId: string, id: string): RecordRow | undefined;
  getRecord<P>(runId: string, id: string, options: PayloadOptions<P>): RecordRow<P> | undefined;
  /** The records with these ids that exist, in the order of `ids` (a page of a listing). */
  getRecordsByIds(runId: string, ids: readonly string[]): RecordRow[];
  /**
   * A few fields of every record of some stages, in insertion order, without decoding whole payloads: what an
   * index over a large run needs (the report's item browser). Paths are JSON paths into the payload.
   */
  recordFields(query: RecordFieldsQuery): RecordFieldsRow[];
  /** A number that changes whenever the run's records change (to notice a running run's progress cheaply). */
  recordsRevision(runId: string): number;
  /**
   * The run's red-team items (one per iteration and prompt) with what each stage made of them, filtered and paged in
   * attempt order, with the number that match. Kept as records are written, so a large run pages without reading
   * payloads.
   */
  queryItems(runId: string, filter: ItemIndexFilter, page: { readonly offset: number; readonly limit: number }): { total: number; rows: ItemIndexRow[] };
  /** The distinct values the item filters can take in a run. */
  itemFacets(runId: string): ItemFacetValues;
  /** Per principle: the items revised under it, and how many of those the gate accepted. */
  principleUse(runId: string): Array<{ principleId: string; revised: number; accepted: number }>;
  /** Releases the underlying resources; later calls raise USAGE. Closing twice is harmless. */
  close(): void;
}

/** How far an item went through the loop. */
export type ItemIndexStage = "red-team" | "judge" | "self-correct" | "gate" | "exported";

/** Filters of {@link RunStore.queryItems}; all given ones must hold. */
export interface ItemIndexFilter {
  /** The item whose attempt has this record id. */
  readonly id?: string;
  readonly iteration?: number;
  readonly stage?: ItemIndexStage;
  /** The judge's verdict; `none`: not judged. */
  readonly verdict?: "pass" | "fail" | "error" | "none";
  /** `accepted`, a rejection reason, or `error`. */
  readonly gate?: string;
  readonly dataset?: string;
  readonly category?: string;
  /** Items with (true) or without (false) an error row at some stage. */
  readonly errors?: boolean;
  /** Items that were (or were not) revised. */
  readonly revised?: boolean;
  /** Case-insensitive substring of the prompt's start or the attempt id. */
  readonly text?: string;
  /** Items revised under this principle, or whose attempt id is in `evidence`. */
  readonly principle?: { readonly id: string; readonly evidence: readonly string[] };
}

/** One item of {@link RunStore.queryItems}. */
export interface ItemIndexRow {
  /** The red-team attempt's record id (the item's id). */
  readonly attemptId: string;
  readonly iteration: number;
  readonly promptId: string;
  /** The prompt id's dataset prefix. */
  readonly dataset: string;
  readonly category: string | null;
  /** The prompt's first 200 characters. */
  readonly promptStart: string;
  readonly verdict: "pass" | "fail" | "error" | null;
  readonly revised: boolean;
  readonly principleIds: readonly string[];
  readonly gate: string | null;
  /** Error rows among the item's records. */
  readonly errors: number;
  readonly stage: ItemIndexStage;
}

/** What {@link RunStore.itemFacets} returns. */
export interface ItemFacetValues {
  readonly iterations: number[];
  readonly datasets: string[];
  readonly categories: string[];
  readonly gates: string[];
}

/** The stages whose records make up an item. */
export const ITEM_STAGES = ["red-team", "judge", "self-correct", "gate", "gate-decision"] as const;

/** @internal The mutable form of an index row, as the in-memory store keeps it (mirrors migration 0005). */
export interface ItemIndexEntry {
  iteration: number;
  attemptId: string | null;
  attemptSeq: number | null;
  promptId: string | null;
  category: string | null;
  promptStart: string | null;
  verdict: "pass" | "fail" | "error" | null;
  revised: boolean;
  principleIds: string[] | null;
  gate: string | null;
  errors: number;
}

/** @internal `it<n>:<kind>:<prompt id>` → `<n>:<prompt id>`, or undefined for records outside items. */
export function itemKeyOf(row: { readonly id: string; readonly stage: string; readonly iteration: number | null }): string | undefined {
  if (row.iteration === null || !(ITEM_STAGES as readonly string[]).includes(row.stage)) return undefined;
  const rest = row.id.slice(row.id.indexOf(":") + 1);
  return `${row.iteration}:${rest.slice(rest.indexOf(":") + 1)}`;
}

/** @internal Applies a written or deleted record to the in-memory item index, as the SQLite triggers do. */
export function applyToItemIndex(index: Map<string, ItemIndexEntry>, row: StoredRecord, op: "insert" | "delete", seq: number): void {
  const key = itemKeyOf(row);
  if (key === undefined || row.iteration === null) return;
  const payload = JSON.parse(row.payload) as unknown;
  const field = (p: string): unknown => readJsonPath(payload, p);
  let e = index.get(key);
  if (op === "insert") {
    e ??= { iteration: row.iteration, attemptId: null, attemptSeq: null, promptId: null, category: null, promptStart: null, verdict: null, revised: false, principleIds: null, gate: null, errors: 0 };
    index.set(key, e);
    if (row.stage === "red-team") {
      const promptId = field("$.record.promptId");
      const category = field("$.record.category");
      const prompt = field("$.record.prompt");
      e.attemptId = row.id;
      e.attemptSeq = seq;
      e.promptId = typeof promptId === "string" ? promptId : key.slice(key.indexOf(":") + 1);
      e.category = typeof category === "string" ? category : null;
      e.promptStart = typeof prompt === "string" ? prompt.slice(0, 200) : null;
    } else if (row.stage === "judge") {
      e.verdict = row.status === "error" ? "error" : field("$.record.verdict.pass") === true ? "pass" : "fail";
    } else if (row.stage === "self-correct") {
      e.revised = true;
      const ids = field("$.record.principleIds");
      if (row.status === "ok") e.principleIds = Array.isArray(ids) ? ids.filter((x): x is string => typeof x === "string") : null;
    } else if (row.stage === "gate-decision") {
      const reason = field("$.record.reason");
      e.gate = field("$.record.accepted") === true ? "accepted" : typeof reason === "string" ? reason : "rejected";
    }
    if (row.status === "error") e.errors++;
    return;
  }
  if (!e) return;
  if (row.stage === "red-team") {
    e.attemptId = null;
    e.attemptSeq = null;
  } else if (row.stage === "judge") e.verdict = null;
  else if (row.stage === "self-correct") {
    e.revised = false;
    e.principleIds = null;
  } else if (row.stage === "gate-decision") e.gate = null;
  if (row.status === "error") e.errors--;
  if (e.attemptId === null && e.verdict === null && !e.revised && e.gate === null && e.errors === 0) index.delete(key);
}

/** @internal The stage an index entry has reached (the generated column of migration 0005). */
export function itemStage(e: Pick<ItemIndexEntry, "gate" | "revised" | "verdict">): ItemIndexStage {
  if (e.gate === "accepted") return "exported";
  if (e.gate !== null) return "gate";
  if (e.revised) return "self-correct";
  if (e.verdict !== null) return "judge";
  return "red-team";
}

/** @internal The dataset prefix of a prompt id. */
export function datasetOf(promptId: string): string {
  const at = promptId.indexOf(":");
  return at > 0 ? promptId.slice(0, at) : promptId;
}

/** What {@link RunStore.recordFields} reads. */
export interface RecordFieldsQuery {
  readonly runId: string;
  readonly stages: readonly string[];
  /**
   * Name to JSON path into the payload, e.g. `{ pass: "$.record.verdict.pass" }` (dotted names only), or a text
   * field cut to its first `maxChars` characters (`{ path, maxChars }`: the start of a long prompt).
   */
  readonly fields: Readonly<Record<string, RecordFieldSpec>>;
}

/** A JSON path, or a text field's path and how much of it to read. */
export type RecordFieldSpec = string | { readonly path: string; readonly maxChars: number };

/** @internal The path of a field spec. */
export function fieldPath(spec: RecordFieldSpec): string {
  return typeof spec === "string" ? spec : spec.path;
}

/** One record's fields; a field whose path does not exist is null. */
export interface RecordFieldsRow {
  readonly id: string;
  readonly stage: string;
  readonly iteration: number | null;
  readonly status: RecordStatus;
  readonly values: Readonly<Record<string, unknown>>;
}

const JSON_PATH = /^\$(\.[A-Za-z_][A-Za-z0-9_-]*)+$/;

/** @internal Checks a {@link RecordFieldsQuery}'s paths (they reach SQLite as bound parameters, never as SQL). */
export function validateFieldPaths(fields: Readonly<Record<string, RecordFieldSpec>>): void {
  for (const [name, spec] of Object.entries(fields)) {
    const p = fieldPath(spec);
    if (typeof spec !== "string" && !(Number.isInteger(spec.maxChars) && spec.maxChars > 0)) {
      throw new IterAlignError("USAGE", `record field '${name}': maxChars must be a positive integer`);
    }
    if (!JSON_PATH.test(p)) throw new IterAlignError("USAGE", `record field '${name}': '${p}' is not a dotted JSON path like $.record.verdict.pass`);
  }
}

/** @internal Reads a dotted JSON path from a parsed payload (the in-memory store's json_extract). */
export function readJsonPath(value: unknown, jsonPath: string): unknown {
  let at: unknown = value;
  for (const key of jsonPath.split(".").slice(1)) {
    if (typeof at !== "object" || at === null || Array.isArray(at)) return null;
    at = (at as Record<string, unknown>)[key];
  }
  return at === undefined ? null : at;
}

// ---------------------------------------------------------------------------------------------
// Shared by the implementations, so both behave (and fail) identically. Not part of the public API.

/** @internal A runs row as stored; same shape as RunRow since its only JSON column stays text. */
export type StoredRun = RunRow;

/** @internal A call as stored: the CallRecord itself, whose JSON columns are already text. */
export type StoredCall = CallRecord;

/** @internal A records row as stored, with its JSON columns still as text. */
export type StoredRecord = Omit<RecordRow, "parentIds" | "payload"> & { parentIds: string; payload: string };

const StoredRecordSchema = RecordRowSchema.extend({ parentIds: z.string(), payload: z.string() });
const StoredGroupSchema = z.object({
  provider: z.string(),
  modelId: z.string(),
  kind: CallKindSchema,
  calls: z.number().int().nonnegative(),
  promptTokens: z.number().nonnegative(),
  completionTokens: z.number().nonnegative(),
  latencyMs: z.number().nonnegative(),
  costUsd: z.number().nonnegative().default(0),
});

/** @internal */
export function storeConflict(message: string, details: Record<string, unknown>): IterAlignError {
  return new IterAlignError("STORE_CONFLICT", message, { details });
}

/** @internal */
export function runNotFound(runId: string): IterAlignError {
  return new IterAlignError("STORE_NOT_FOUND", `run "${runId}" does not exist`, { details: { runId } });
}

/** @internal */
export function storeCorrupt(table: string, key: string, reason: string, cause?: unknown): IterAlignError {
  return new IterAlignError("STORE_CORRUPT", `corrupt ${table} row ${key}: ${reason}`, {
    cause,
    details: { table, key },
  });
}

/** @internal */
export function storeClosed(): IterAlignError {
  return new IterAlignError("USAGE", "the run store is closed");
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length > 0 ? i.path.join(".") : "(value)"}: ${i.message}`).join("; ");
}

/** @internal Validates a caller-supplied argument; bad input is a USAGE error, not a store failure. */
export function validateInput<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new IterAlignError("USAGE", `invalid ${what}: ${describeIssues(parsed.error)}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** @internal Checks a pid before it reaches process.kill, where 0 or negatives would address process groups. */
export function validatePid(pid: number): number {
  return validateInput(PidSchema, pid, "owner pid");
}

function isJsonText(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function parseJsonColumn(text: string, table: string, key: string, column: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw storeCorrupt(table, key, `column ${column} is not valid JSON`, err);
  }
}

function decodeOrCorrupt<T>(schema: z.ZodType<T>, raw: unknown, table: string, key: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw storeCorrupt(table, key, describeIssues(parsed.error), parsed.error);
  return parsed.data;
}

/** @internal Whether a process exists. EPERM means it exists but belongs to someone else. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** @internal Decides a claim; returns the dead owner being replaced, or null. */
export function resolveClaim(run: RunRow, claimant: number): number | null {
  const owner = run.ownerPid;
  if (owner === null || owner === claimant) return null;
  if (isProcessAlive(owner)) {
    throw storeConflict(`run "${run.id}" is held by live process ${owner}; process ${claimant} cannot claim it`, {
      runId: run.id,
      ownerPid: owner,
      claimant,
    });
  }
  return owner;
}

/** @internal Checks that `ownerPid` may release the run's lease (true when there is one to drop). */
export function checkRelease(run: RunRow, ownerPid: number): boolean {
  if (run.ownerPid === null) return false;
  if (run.ownerPid !== ownerPid) {
    throw storeConflict(`run "${run.id}" is held by process ${run.ownerPid}, not ${ownerPid}`, {
      runId: run.id,
      ownerPid: run.ownerPid,
      claimant: ownerPid,
    });
  }
  return true;
}

/** @internal Refuses writes to a run leased by another live process. */
export function assertWritable(run: RunRow): void {
  const owner = run.ownerPid;
  if (owner !== null && owner !== process.pid && isProcessAlive(owner)) {
    throw storeConflict(`run "${run.id}" is held by live process ${owner}; this process (${process.pid}) cannot write it`, {
      runId: run.id,
      ownerPid: owner,
      writer: process.pid,
    });
  }
}

/** @internal */
export function encodeNewRun(input: NewRun): StoredRun {
  const run = validateInput(NewRunSchema, input, "run");
  return { ...run, status: "running", finishedAt: null, error: null, ownerPid: null };
}

// The JSON check is done separately on read so the error can name the column.
const StoredRunSchema = RunRowSchema.extend({ configJson: z.string() });

/** @internal */
export function decodeRun(raw: unknown): RunRow {
  const key = keyOf(raw, ["id"]);
  const run = decodeOrCorrupt(StoredRunSchema, raw, "runs", key);
  parseJsonColumn(run.configJson, "runs", key, "config_json");
  return run;
}

/** @internal Validates a status change and returns the columns it sets. */
export function encodeStatus(
  status: RunStatus,
  options: RunStatusOptions,
): Pick<RunRow, "status" | "finishedAt" | "error"> {
  return {
    status: validateInput(RunStatusSchema, status, "run status"),
    finishedAt: validateInput(z.string().min(1).optional(), options.finishedAt, "finishedAt") ?? null,
    error: validateInput(z.string().optional(), options.error, "error") ?? null,
  };
}

const StoredCallInputSchema = CallRecordSchema.extend({ request: JsonTextSchema, response: JsonTextSchema });

/** @internal */
export function encodeCall(record: CallRecord): StoredCall {
  return validateInput(StoredCallInputSchema, record, "call record");
}

/** @internal */
export function decodeCall(raw: unknown): CallRecord {
  const key = keyOf(raw, ["key"]);
  const call = decodeOrCorrupt(CallRecordSchema, raw, "llm_calls", key);
  parseJsonColumn(call.request, "llm_calls", key, "request");
  parseJsonColumn(call.response, "llm_calls", key, "response");
  return call;
}

/** @internal Builds sorted groups and their total from per-group sums (however they were computed). */
export function finishCallStats(rawGroups: readonly unknown[]): CallStats {
  const groups = rawGroups.map((g) => decodeOrCorrupt(StoredGroupSchema, g, "llm_calls", "(aggregate)"));
  // Sorting here rather than in SQL keeps the order identical across implementations (SQLite
  // compares UTF-8 bytes, JavaScript compares UTF-16 code units).
  groups.sort((a, b) => compare(a.provider, b.provider) || compare(a.modelId, b.modelId) || compare(a.kind, b.kind));
  const total: CallTotals = { calls: 0, promptTokens: 0, completionTokens: 0, latencyMs: 0, costUsd: 0 };
  for (const g of groups) {
    total.calls += g.calls;
    total.promptTokens += g.promptTokens;
    total.completionTokens += g.completionTokens;
    total.latencyMs += g.latencyMs;
    total.costUsd += g.costUsd;
  }
  return { total, groups };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** @internal Validates a record and serialises its JSON columns. */
export function encodeRecord(row: RecordRow): StoredRecord {
  const valid = validateInput(RecordRowSchema, row, `record ${describeRecordKey(row)}`);
  return { ...valid, parentIds: JSON.stringify(valid.parentIds), payload: JSON.stringify(valid.payload) };
}

/** @internal Parses a stored record, checking its payload against `payloadSchema` when given. */
export function decodeRecord<P>(raw: unknown, payloadSchema?: z.ZodType<P>): RecordRow<P> {
  const key = keyOf(raw, ["runId", "id"]);
  const stored = decodeOrCorrupt(StoredRecordSchema, raw, "records", key);
  const parentIds = decodeOrCorrupt(
    z.array(z.string().min(1)),
    parseJsonColumn(stored.parentIds, "records", key, "parent_ids"),
    "records",
    key,
  );
  const payload = parseJsonColumn(stored.payload, "records", key, "payload");
  if (payloadSchema === undefined) return { ...stored, parentIds, payload: payload as P };
  const parsed = payloadSchema.safeParse(payload);
  if (!parsed.success) {
    throw storeCorrupt("records", key, `payload does not match the expected schema: ${describeIssues(parsed.error)}`);
  }
  return { ...stored, parentIds, payload: parsed.data };
}

/** @internal */
export function normalizeRecordQuery(query: RecordQuery): RecordQuery {
  return validateInput(RecordQuerySchema, query, "record query");
}

/** @internal Whether a stored record matches a validated query. */
export function recordMatches(row: StoredRecord, query: RecordQuery): boolean {
  return (
    row.runId === query.runId &&
    (query.stage === undefined || row.stage === query.stage) &&
    (query.iteration === undefined || row.iteration === query.iteration) &&
    (query.status === undefined || row.status === query.status)
  );
}

function describeRecordKey(row: unknown): string {
  return keyOf(row, ["runId", "id"]);
}

/** A readable key for messages, taken defensively from a row that may itself be malformed. */
function keyOf(raw: unknown, fields: readonly string[]): string {
  if (typeof raw !== "object" || raw === null) return "(unknown)";
  const record = raw as Record<string, unknown>;
  return fields.map((f) => (typeof record[f] === "string" ? record[f] : "?")).join("/");
}

/** @internal A batch job as stored (custom ids as JSON text). */
export type StoredBatchJob = Omit<BatchJob, "customIds"> & { customIds: string };

/** @internal */
export function encodeBatchJob(job: BatchJob): StoredBatchJob {
  const valid = validateInput(BatchJobSchema, job, "batch job");
  return { ...valid, customIds: JSON.stringify(valid.customIds) };
}

/** @internal */
export function decodeBatchJob(raw: unknown): BatchJob {
  const key = keyOf(raw, ["id"]);
  const stored = decodeOrCorrupt(BatchJobSchema.extend({ customIds: z.string() }), raw, "batch_jobs", key);
  const customIds = decodeOrCorrupt(z.array(z.string()), parseJsonColumn(stored.customIds, "batch_jobs", key, "custom_ids"), "batch_jobs", key);
  return { ...stored, customIds };
}
