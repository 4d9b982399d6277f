import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { z } from "zod";
import type { BatchJob, CallRecord } from "../spec/call-log.js";
import { IterAlignError } from "../spec/errors.js";
import { LATEST_SCHEMA_VERSION, migrations } from "./migrations/index.js";
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
  resolveClaim,
  runNotFound,
  storeClosed,
  storeConflict,
  storeCorrupt,
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
  type StoredRecord,
  decodeBatchJob,
  encodeBatchJob,
  fieldPath,
  validateFieldPaths,
  type ItemFacetValues,
  type ItemIndexFilter,
  type ItemIndexRow,
  type ItemIndexStage,
  type RecordFieldSpec,
  type RecordFieldsQuery,
  type RecordFieldsRow,
  type StoredBatchJob,
} from "./run-store.js";

/** Path that opens a private, non-persistent database. */
export const MEMORY_PATH = ":memory:";

const RUN_COLUMNS = `id, config_json AS configJson, config_hash AS configHash, status, created_at AS createdAt,
  finished_at AS finishedAt, error, owner_pid AS ownerPid`;
const CALL_COLUMNS = `key, provider, model_id AS modelId, kind, request, response, prompt_tokens AS promptTokens,
  completion_tokens AS completionTokens, cached_prompt_tokens AS cachedPromptTokens, cost_usd AS costUsd, latency_ms AS latencyMs,
  created_at AS createdAt, run_id AS runId, role`;
const RECORD_COLUMNS = `run_id AS runId, id, stage, iteration, kind, parent_ids AS parentIds, model,
  prompt_hash AS promptHash, status, payload, created_at AS createdAt`;

const AppliedMigrationSchema = z.object({ version: z.number().int(), name: z.string() });

/**
 * RunStore on a SQLite file (better-sqlite3). Several processes may open the same file: WAL lets
 * readers proceed during writes, and read-then-write steps (claims, inserts after checks) run in
 * IMMEDIATE transactions so the check and the write see the same state.
 */
export class SqliteRunStore implements RunStore {
  /** The path as given (or `:memory:`). */
  readonly path: string;
  private readonly db: Database.Database;
  private readonly stmts: ReturnType<typeof prepareStatements>;
  private closed = false;

  /**
   * Opens (creating when missing, along with its parent directories) and migrates the database.
   * Throws STORE_CONFLICT when the file's schema is newer than this code, STORE_CORRUPT when it is
   * not a database or its migration history does not match.
   */
  constructor(path: string) {
    this.path = path;
    if (path !== MEMORY_PATH) {
      const dir = dirname(resolve(path));
      try {
        mkdirSync(dir, { recursive: true });
      } catch (err) {
        throw new IterAlignError("STORE_UNAVAILABLE", `cannot create the run store's directory ${dir}: ${(err as Error).message}`, {
          cause: err,
          details: { path, dir },
        });
      }
    }
    try {
      this.db = new Database(path, { timeout: 5000 });
    } catch (err) {
      throw translateOpenError(err, path);
    }
    try {
      this.db.pragma("busy_timeout = 5000");
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = NORMAL");
      this.db.pragma("foreign_keys = ON");
      migrate(this.db, path);
      this.stmts = prepareStatements(this.db);
    } catch (err) {
      this.db.close();
      throw translateOpenError(err, path);
    }
  }

  /** The schema version of the open database (always the latest after a successful open). */
  get schemaVersion(): number {
    return appliedVersion(this.live());
  }

  createRun(run: NewRun): RunRow {
    return this.guard(() => {
      const stored = encodeNewRun(run);
      return this.immediate(() => {
        if (this.stmts.getRun.get(stored.id) !== undefined) {
          throw storeConflict(`run "${stored.id}" already exists`, { runId: stored.id });
        }
        this.stmts.insertRun.run(stored);
        return this.requireRun(stored.id);
      });
    });
  }

  getRun(id: string): RunRow | undefined {
    return this.guard(() => {
      this.live();
      const raw = this.stmts.getRun.get(id);
      return raw === undefined ? undefined : decodeRun(raw);
    });
  }

  listRuns(): RunRow[] {
    return this.guard(() => {
      this.live();
      return this.stmts.listRuns.all().map(decodeRun);
    });
  }

  updateRunStatus(id: string, status: RunStatus, options: RunStatusOptions = {}): RunRow {
    return this.guard(() => {
      const change = encodeStatus(status, options);
      return this.immediate(() => {
        assertWritable(this.requireRun(id));
        this.stmts.updateStatus.run({ id, ...change });
        return this.requireRun(id);
      });
    });
  }

  claimRun(id: string, ownerPid: number): ClaimResult {
    return this.guard(() => {
      const pid = validatePid(ownerPid);
      return this.immediate(() => {
        const takenOverFrom = resolveClaim(this.requireRun(id), pid);
        this.stmts.setOwner.run({ id, ownerPid: pid });
        return { run: this.requireRun(id), takenOverFrom };
      });
    });
  }

  releaseRun(id: string, ownerPid: number): RunRow {
    return this.guard(() => {
      const pid = validatePid(ownerPid);
      return this.immediate(() => {
        if (checkRelease(this.requireRun(id), pid)) this.stmts.setOwner.run({ id, ownerPid: null });
        return this.requireRun(id);
      });
    });
  }

  getCall(key: string): CallRecord | undefined {
    return this.guard(() => {
      this.live();
      const raw = this.stmts.getCall.get(key);
      return raw === undefined ? undefined : decodeCall(raw);
    });
  }

  putCall(record: CallRecord): void {
    this.guard(() => {
      const stored = encodeCall(record);
      this.live();
      this.stmts.insertCall.run(stored);
    });
  }

  callStats(query: CallStatsQuery = {}): CallStats {
    return this.guard(() => {
      this.live();
      return finishCallStats(this.stmts.callStats.all({ runId: query.runId ?? null }));
    });
  }

  putRecords(rows: readonly RecordRow[]): void {
    this.guard(() => {
      const stored = rows.map(encodeRecord);
      this.live();
      if (stored.length === 0) return;
      this.immediate(() => {
        for (const runId of new Set(stored.map((r) => r.runId))) assertWritable(this.requireRun(runId));
        for (const row of stored) {
          if (this.stmts.getRecord.get({ runId: row.runId, id: row.id }) !== undefined) {
            throw storeConflict(`record "${row.id}" already exists in run "${row.runId}"`, {
              runId: row.runId,
              id: row.id,
            });
          }
          this.stmts.insertRecord.run(row);
        }
      });
    });
  }

  replaceRecords(runId: string, remove: readonly string[], rows: readonly RecordRow[]): void {
    this.guard(() => {
      const stored = rows.map(encodeRecord);
      this.live();
      this.immediate(() => {
        assertWritable(this.requireRun(runId));
        for (const id of remove) this.stmts.deleteRecord.run({ runId, id });
        for (const row of stored) {
          if (row.runId !== runId) throw storeConflict(`record "${row.id}" belongs to run "${row.runId}", not "${runId}"`, { runId, id: row.id });
          if (this.stmts.getRecord.get({ runId, id: row.id }) !== undefined) {
            throw storeConflict(`record "${row.id}" already exists in run "${runId}"`, { runId, id: row.id });
          }
          this.stmts.insertRecord.run(row);
        }
      });
    });
  }

  putBatchJob(job: BatchJob): void {
    this.guard(() => {
      const stored = encodeBatchJob(job);
      this.live();
      this.stmts.upsertBatchJob.run(stored);
    });
  }

  listBatchJobs(provider: string): BatchJob[] {
    return this.guard(() => {
      this.live();
      return this.stmts.listBatchJobs.all(provider).map(decodeBatchJob);
    });
  }

  getRecords(query: RecordQuery): RecordRow[];
  getRecords<P>(query: RecordQuery, options: PayloadOptions<P>): RecordRow<P>[];
  getRecords<P>(query: RecordQuery, options?: PayloadOptions<P>): RecordRow<P>[] {
    return this.guard(() => {
      const q = normalizeRecordQuery(query);
      this.live();
      const raws = this.stmts.getRecords.all({
        runId: q.runId,
        stage: q.stage ?? null,
        // A flag, because null is itself a valid iteration filter.
        filterIteration: q.iteration === undefined ? 0 : 1,
        iteration: q.iteration ?? null,
        status: q.status ?? null,
      });
      return raws.map((raw) => decodeRecord(raw, options?.payload));
    });
  }

  getRecord(runId: string, id: string): RecordRow | undefined;
  getRecord<P>(runId: string, id: string, options: PayloadOptions<P>): RecordRow<P> | undefined;
  getRecord<P>(runId: string, id: string, options?: PayloadOptions<P>): RecordRow<P> | undefined {
    return this.guard(() => {
      this.live();
      const raw = this.stmts.getRecord.get({ runId, id });
      return raw === undefined ? undefined : decodeRecord(raw, options?.payload);
    });
  }

  getRecordsByIds(runId: string, ids: readonly string[]): RecordRow[] {
    return this.guard(() => {
      this.live();
      const found = new Map<string, RecordRow>();
      // SQLite binds at most 32766 parameters; pages are far smaller, but chunk anyway.
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        const raws = this.db
          .prepare<unknown[], unknown>(`SELECT ${RECORD_COLUMNS} FROM records WHERE run_id = ? AND id IN (${chunk.map(() => "?").join(", ")})`)
          .all(runId, ...chunk);
        for (const raw of raws) {
          const row = decodeRecord(raw);
          found.set(row.id, row);
        }
      }
      return ids.flatMap((id) => found.get(id) ?? []);
    });
  }

  recordFields(query: RecordFieldsQuery): RecordFieldsRow[] {
    return this.guard(() => {
      this.live();
      validateFieldPaths(query.fields);
      if (query.stages.length === 0) return [];
      const names = Object.keys(query.fields);
      // `->` yields the value as JSON text, so booleans stay booleans (json_extract would give 0/1).
      // A text field is cut in SQL (`->>` gives the string itself), so a long text is never read whole.
      const select = names
        .map((n, i) => {
          const spec = query.fields[n] as RecordFieldSpec;
          return typeof spec === "string" ? `payload -> ? AS f${i}` : `json_quote(substr(payload ->> ?, 1, ${spec.maxChars})) AS f${i}`;
        })
        .join(", ");
      const sql = `SELECT id, stage, iteration, status${select ? `, ${select}` : ""} FROM records
        WHERE run_id = ? AND stage IN (${query.stages.map(() => "?").join(", ")}) ORDER BY seq`;
      const rows = this.db.prepare<unknown[], Record<string, unknown>>(sql).all(...names.map((n) => fieldPath(query.fields[n] as RecordFieldSpec)), query.runId, ...query.stages);
      return rows.map((r) => ({
        id: String(r.id),
        stage: String(r.stage),
        iteration: typeof r.iteration === "number" ? r.iteration : null,
        status: r.status === "error" ? "error" : "ok",
        values: Object.fromEntries(names.map((n, i) => [n, typeof r[`f${i}`] === "string" ? (JSON.parse(r[`f${i}`] as string) as unknown) : null])),
      }));
    });
  }

  queryItems(runId: string, filter: ItemIndexFilter, page: { readonly offset: number; readonly limit: number }): { total: number; rows: ItemIndexRow[] } {
    return this.guard(() => {
      this.live();
      const where: string[] = ["run_id = @runId", "attempt_id IS NOT NULL"];
      const params: Record<string, unknown> = { runId };
      if (filter.id !== undefined) {
        where.push("attempt_id = @id");
        params.id = filter.id;
      }
      if (filter.iteration !== undefined) {
        where.push("iteration = @iteration");
        params.iteration = filter.iteration;
      }
      if (filter.stage !== undefined) {
        where.push("stage = @stage");
        params.stage = filter.stage;
      }
      if (filter.verdict !== undefined) {
        if (filter.verdict === "none") where.push("verdict IS NULL");
        else {
          where.push("verdict = @verdict");
          params.verdict = filter.verdict;
        }
      }
      for (const key of ["gate", "dataset", "category"] as const) {
        if (filter[key] !== undefined) {
          where.push(`${key} = @${key}`);
          params[key] = filter[key];
        }
      }
      if (filter.errors !== undefined) where.push(filter.errors ? "errors > 0" : "errors = 0");
      if (filter.revised !== undefined) where.push(`revised = ${filter.revised ? 1 : 0}`);
      if (filter.text !== undefined && filter.text.trim() !== "") {
        where.push("(lower(prompt_start) LIKE @text ESCAPE '\\' OR lower(attempt_id) LIKE @text ESCAPE '\\')");
        params.text = `%${filter.text.trim().toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      }
      if (filter.principle !== undefined) {
        where.push("(EXISTS (SELECT 1 FROM json_each(principle_ids) WHERE value = @principle) OR attempt_id IN (SELECT value FROM json_each(@evidence)))");
        params.principle = filter.principle.id;
        params.evidence = JSON.stringify(filter.principle.evidence);
      }
      const clause = where.join(" AND ");
      const total = (this.db.prepare<Record<string, unknown>, { n: number }>(`SELECT COUNT(*) AS n FROM item_index WHERE ${clause}`).get(params)?.n ?? 0);
      const raws = this.db
        .prepare<Record<string, unknown>, Record<string, unknown>>(
          `SELECT attempt_id, iteration, prompt_id, dataset, category, prompt_start, verdict, revised, principle_ids, gate, errors, stage
           FROM item_index WHERE ${clause} ORDER BY attempt_seq LIMIT @limit OFFSET @offset`,
        )
        .all({ ...params, limit: Math.max(0, Math.floor(page.limit)), offset: Math.max(0, Math.floor(page.offset)) });
      return {
        total,
        rows: raws.map((r) => ({
          attemptId: String(r.attempt_id),
          iteration: Number(r.iteration),
          promptId: typeof r.prompt_id === "string" ? r.prompt_id : "",
          dataset: typeof r.dataset === "string" ? r.dataset : "",
          category: typeof r.category === "string" ? r.category : null,
          promptStart: typeof r.prompt_start === "string" ? r.prompt_start : "",
          verdict: r.verdict === "pass" || r.verdict === "fail" || r.verdict === "error" ? r.verdict : null,
          revised: r.revised === 1,
          principleIds: typeof r.principle_ids === "string" ? (JSON.parse(r.principle_ids) as string[]) : [],
          gate: typeof r.gate === "string" ? r.gate : null,
          errors: Number(r.errors),
          stage: r.stage as ItemIndexStage,
        })),
      };
    });
  }

  itemFacets(runId: string): ItemFacetValues {
    return this.guard(() => {
      this.live();
      const distinct = <T>(column: string): T[] =>
        this.db
          .prepare<[string], { v: T }>(`SELECT DISTINCT ${column} AS v FROM item_index WHERE run_id = ? AND attempt_id IS NOT NULL AND ${column} IS NOT NULL ORDER BY v`)
          .all(runId)
          .map((r) => r.v);
      return { iterations: distinct<number>("iteration"), datasets: distinct<string>("dataset"), categories: distinct<string>("category"), gates: distinct<string>("gate") };
    });
  }

  principleUse(runId: string): Array<{ principleId: string; revised: number; accepted: number }> {
    return this.guard(() => {
      this.live();
      return this.db
        .prepare<[string], { principleId: string; revised: number; accepted: number }>(
          // Items are first grouped by their list of principles (few distinct lists, read from a partial index),
          // then each list is expanded: the same counts as expanding every item's list, several times faster.
          `WITH lists AS (
             SELECT principle_ids, COUNT(*) AS revised, SUM(gate = 'accepted') AS accepted FROM item_index
             WHERE run_id = ? AND revised = 1 AND attempt_id IS NOT NULL AND principle_ids IS NOT NULL
             GROUP BY principle_ids)
           SELECT j.value AS principleId, SUM(l.revised) AS revised, SUM(l.accepted) AS accepted
           FROM lists AS l, json_each(l.principle_ids) AS j
           GROUP BY j.value ORDER BY j.value`,
        )
        .all(runId);
    });
  }

  recordsRevision(runId: string): number {
    return this.guard(() => {
      this.live();
      const row = this.db.prepare<[string], { revision: number }>("SELECT revision FROM record_revisions WHERE run_id = ?").get(runId);
      return row?.revision ?? 0;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  /** Runs a store operation, turning SQLite's errors into typed ones that name this store's file. */
  private guard<T>(operation: () => T): T {
    try {
      return operation();
    } catch (err) {
      throw translateSqliteError(err, this.path);
    }
  }

  /** Returns the connection, refusing use after close with a clear error rather than SQLite's. */
  private live(): Database.Database {
    if (this.closed) throw storeClosed();
    return this.db;
  }

  private immediate<T>(fn: () => T): T {
    return this.live().transaction(fn).immediate();
  }

  private requireRun(id: string): RunRow {
    const raw = this.stmts.getRun.get(id);
    if (raw === undefined) throw runNotFound(id);
    return decodeRun(raw);
  }
}

function prepareStatements(db: Database.Database) {
  return {
    getRun: db.prepare<[string], unknown>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
    listRuns: db.prepare<[], unknown>(`SELECT ${RUN_COLUMNS} FROM runs ORDER BY seq`),
    insertRun: db.prepare<[RunRow], unknown>(
      `INSERT INTO runs (id, config_json, config_hash, status, created_at, finished_at, error, owner_pid)
       VALUES (@id, @configJson, @configHash, @status, @createdAt, @finishedAt, @error, @ownerPid)`,
    ),
    updateStatus: db.prepare<[Pick<RunRow, "id" | "status" | "finishedAt" | "error">], unknown>(
      `UPDATE runs SET status = @status, finished_at = @finishedAt, error = @error WHERE id = @id`,
    ),
    setOwner: db.prepare<[{ id: string; ownerPid: number | null }], unknown>(
      `UPDATE runs SET owner_pid = @ownerPid WHERE id = @id`,
    ),
    // seq is the rowid, so the key index already orders by it and "newest" is one index probe.
    getCall: db.prepare<[string], unknown>(
      `SELECT ${CALL_COLUMNS} FROM llm_calls WHERE key = ? ORDER BY seq DESC LIMIT 1`,
    ),
    insertCall: db.prepare<[CallRecord], unknown>(
      `INSERT INTO llm_calls (key, provider, model_id, kind, request, response, prompt_tokens, completion_tokens,
         cached_prompt_tokens, cost_usd, latency_ms, created_at, run_id, role)
       VALUES (@key, @provider, @modelId, @kind, @request, @response, @promptTokens, @completionTokens,
         @cachedPromptTokens, @costUsd, @latencyMs, @createdAt, @runId, @role)`,
    ),
    callStats: db.prepare<[{ runId: string | null }], unknown>(
      `SELECT provider, model_id AS modelId, kind, COUNT(*) AS calls, SUM(prompt_tokens) AS promptTokens,
         SUM(completion_tokens) AS completionTokens, SUM(latency_ms) AS latencyMs, SUM(cost_usd) AS costUsd
       FROM llm_calls WHERE @runId IS NULL OR run_id = @runId
       GROUP BY provider, model_id, kind`,
    ),
    insertRecord: db.prepare<[StoredRecord], unknown>(
      `INSERT INTO records (run_id, id, stage, iteration, kind, parent_ids, model, prompt_hash, status, payload,
         created_at)
       VALUES (@runId, @id, @stage, @iteration, @kind, @parentIds, @model, @promptHash, @status, @payload,
         @createdAt)`,
    ),
    upsertBatchJob: db.prepare<[StoredBatchJob], unknown>(
      `INSERT INTO batch_jobs (id, provider, endpoint, external_id, input_ref, custom_ids, status, created_at, updated_at)
       VALUES (@id, @provider, @endpoint, @externalId, @inputRef, @customIds, @status, @createdAt, @updatedAt)
       ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id, input_ref = excluded.input_ref,
         status = excluded.status, updated_at = excluded.updated_at`,
    ),
    listBatchJobs: db.prepare<[string], unknown>(
      `SELECT id, provider, endpoint, external_id AS externalId, input_ref AS inputRef, custom_ids AS customIds, status,
         created_at AS createdAt, updated_at AS updatedAt FROM batch_jobs WHERE provider = ? ORDER BY seq DESC`,
    ),
    deleteRecord: db.prepare<[{ runId: string; id: string }], unknown>(`DELETE FROM records WHERE run_id = @runId AND id = @id`),
    getRecord: db.prepare<[{ runId: string; id: string }], unknown>(
      `SELECT ${RECORD_COLUMNS} FROM records WHERE run_id = @runId AND id = @id`,
    ),
    getRecords: db.prepare<
      [{ runId: string; stage: string | null; filterIteration: 0 | 1; iteration: number | null; status: string | null }],
      unknown
    >(
      `SELECT ${RECORD_COLUMNS} FROM records
       WHERE run_id = @runId
         AND (@stage IS NULL OR stage = @stage)
         AND (@filterIteration = 0 OR iteration IS @iteration)
         AND (@status IS NULL OR status = @status)
       ORDER BY seq`,
    ),
  };
}

function appliedVersion(db: Database.Database): number {
  const row = db.prepare<[], { version: number | null }>("SELECT MAX(version) AS version FROM schema_migrations").get();
  return row?.version ?? 0;
}

/** Applies the missing migrations, each in its own IMMEDIATE transaction so concurrent openers serialise. */
function migrate(db: Database.Database, path: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
  checkHistory(db, path);
  const record = db.prepare<[number, string, string], unknown>(
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
  );
  for (const m of migrations) {
    db.transaction(() => {
      // Re-read inside the lock: another process may have applied it since we looked.
      if (appliedVersion(db) >= m.version) return;
      db.exec(m.sql);
      record.run(m.version, m.name, new Date().toISOString());
    }).immediate();
  }
}

/** Refuses a newer schema, and a history whose names differ from ours (a diverging build). */
function checkHistory(db: Database.Database, path: string): void {
  const version = appliedVersion(db);
  if (version > LATEST_SCHEMA_VERSION) {
    throw storeConflict(
      `database ${path} has schema version ${version}, newer than the newest this iteralign knows ` +
        `(${LATEST_SCHEMA_VERSION}); upgrade iteralign to open it`,
      { path, version, supported: LATEST_SCHEMA_VERSION },
    );
  }
  const applied = db.prepare<[], unknown>("SELECT version, name FROM schema_migrations ORDER BY version").all();
  for (const raw of applied) {
    const parsed = AppliedMigrationSchema.safeParse(raw);
    const known = parsed.success ? migrations[parsed.data.version - 1] : undefined;
    if (!parsed.success || known?.name !== parsed.data.name) {
      const key = parsed.success ? String(parsed.data.version) : "(unreadable)";
      throw storeCorrupt("schema_migrations", key, `${path} records a migration this iteralign does not know`);
    }
  }
}

function translateOpenError(err: unknown, path: string): unknown {
  if (err instanceof IterAlignError) return err;
  const code = (err as { code?: unknown }).code;
  if (code === "SQLITE_NOTADB") {
    return new IterAlignError("STORE_CORRUPT", `run store ${path} is not a readable iteralign database (SQLITE_NOTADB)`, {
      cause: err,
      details: { path, sqliteCode: code },
    });
  }
  return translateSqliteError(err, path);
}

/**
 * SQLite's errors as typed ones naming the store's file and SQLite's code, with what to do about them:
 * a malformed file (STORE_CORRUPT), a full disk (STORE_FULL), a read-only file or directory
 * (STORE_READONLY), a file that cannot be opened or read (STORE_UNAVAILABLE). Others keep their text.
 */
export function translateSqliteError(err: unknown, path: string): unknown {
  if (err instanceof IterAlignError || !(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return err;
  const details = { path, sqliteCode: code };
  const text = `${err.message} (${code})`;
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") {
    return new IterAlignError("STORE_CORRUPT", `run store ${path} is damaged: ${text}; restore it from a copy, or start a new store`, { cause: err, details });
  }
  if (code === "SQLITE_FULL" || code === "SQLITE_IOERR_WRITE" && /full/i.test(err.message)) {
    return new IterAlignError("STORE_FULL", `run store ${path}: ${text}; free disk space, then resume the run`, { cause: err, details });
  }
  if (code.startsWith("SQLITE_READONLY")) {
    return new IterAlignError("STORE_READONLY", `run store ${path} cannot be written: ${text}; check the permissions of the file and its directory`, { cause: err, details });
  }
  if (code.startsWith("SQLITE_CANTOPEN") || code.startsWith("SQLITE_IOERR") || code === "SQLITE_PERM" || code === "SQLITE_AUTH") {
    return new IterAlignError("STORE_UNAVAILABLE", `run store ${path} cannot be opened or read: ${text}`, { cause: err, details });
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new IterAlignError("STORE_CONFLICT", `run store ${path} is locked by another process: ${text}`, { cause: err, details });
  }
  return new IterAlignError("STORE_UNAVAILABLE", `run store ${path}: ${text}`, { cause: err, details });
}
