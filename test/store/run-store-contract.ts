import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { BatchJob, CallRecord } from "../../src/spec/call-log.js";
import { IterAlignError, type ErrorCode } from "../../src/spec/errors.js";
import type { NewRun, RecordRow, RunStore } from "../../src/store/run-store.js";

/** Asserts that `fn` throws an IterAlignError with `code` whose message matches `message`. */
export function expectStoreError(fn: () => unknown, code: ErrorCode, message?: RegExp): IterAlignError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(IterAlignError);
  const err = caught as IterAlignError;
  expect(err.code).toBe(code);
  if (message !== undefined) expect(err.message).toMatch(message);
  return err;
}

/** The pid of a process that has already exited (so no live process owns it, barring reuse). */
export function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  if (child.pid === undefined) throw new Error("could not spawn a child process");
  return child.pid;
}

/** Starts an idle child process, a live owner other than the test process. Kill it when done. */
export function startIdleProcess(): ChildProcess {
  return spawn(process.execPath, ["-e", "setInterval(() => {}, 60_000)"], { stdio: "ignore" });
}

/** A valid new run. */
export function newRun(id: string, createdAt = "2025-01-01T00:00:00.000Z"): NewRun {
  return { id, configJson: JSON.stringify({ seed: 1, name: id }), configHash: `hash-${id}`, createdAt };
}

/** A valid call record; `key` is derived from `n` so each n is a distinct cache key. */
export function callRecord(n: number, overrides: Partial<CallRecord> = {}): CallRecord {
  return {
    key: n.toString(16).padStart(64, "0"),
    provider: "llama-cpp",
    modelId: "tiny",
    kind: "generate",
    request: JSON.stringify({ messages: [{ role: "user", content: `q${n}` }] }),
    response: JSON.stringify({ text: `a${n}` }),
    promptTokens: 10,
    completionTokens: 5,
    cachedPromptTokens: 0,
    costUsd: 0,
    latencyMs: 100,
    createdAt: "2025-01-01T00:00:00.000Z",
    runId: null,
    role: null,
    ...overrides,
  };
}

/** A valid record of `runId`. */
export function record(runId: string, id: string, overrides: Partial<RecordRow> = {}): RecordRow {
  return {
    runId,
    id,
    stage: "redteam",
    iteration: 0,
    kind: "prompt",
    parentIds: [],
    model: "tiny",
    promptHash: "p".repeat(8),
    status: "ok",
    payload: { text: `payload of ${id}`, tags: ["a", "b"], n: 1.5, nested: { ok: true, none: null } },
    createdAt: "2025-01-01T00:00:01.000Z",
    ...overrides,
  };
}

/** Behaviour every RunStore must have. `makeStore` returns a fresh, empty store on each call. */
export function runStoreContract(name: string, makeStore: () => RunStore): void {
  describe(`${name}: RunStore contract`, () => {
    let store: RunStore;
    let other: ChildProcess;
    let otherPid: number;

    beforeAll(() => {
      other = startIdleProcess();
      if (other.pid === undefined) throw new Error("could not start the idle process");
      otherPid = other.pid;
    });
    afterAll(() => {
      other.kill();
    });
    beforeEach(() => {
      store = makeStore();
    });
    afterEach(() => {
      store.close();
    });

    describe("runs", () => {
      it("creates a running, unowned run and reads it back", () => {
        const created = store.createRun(newRun("r1"));
        expect(created).toEqual({ ...newRun("r1"), status: "running", finishedAt: null, error: null, ownerPid: null });
        expect(store.getRun("r1")).toEqual(created);
      });

      it("returns undefined for an unknown run", () => {
        expect(store.getRun("nope")).toBeUndefined();
      });

      it("refuses a duplicate id with STORE_CONFLICT naming it", () => {
        store.createRun(newRun("dup"));
        const err = expectStoreError(() => store.createRun(newRun("dup")), "STORE_CONFLICT", /"dup"/);
        expect(err.details).toMatchObject({ runId: "dup" });
      });

      it("rejects invalid run input with USAGE", () => {
        expectStoreError(() => store.createRun({ ...newRun("bad"), configJson: "{not json" }), "USAGE", /configJson/);
        expectStoreError(() => store.createRun({ ...newRun("bad"), id: "" }), "USAGE", /id/);
        expect(store.listRuns()).toEqual([]);
      });

      it("lists runs in creation order and treats SQL-looking ids as plain values", () => {
        const ids = ["b", "a", "x'); DROP TABLE runs; --", "c"];
        for (const id of ids) store.createRun(newRun(id));
        expect(store.listRuns().map((r) => r.id)).toEqual(ids);
      });

      it("updates status, setting and clearing finishedAt and error", () => {
        store.createRun(newRun("r"));
        const failed = store.updateRunStatus("r", "failed", { finishedAt: "2025-01-02T00:00:00Z", error: "boom" });
        expect(failed).toMatchObject({ status: "failed", finishedAt: "2025-01-02T00:00:00Z", error: "boom" });
        expect(store.getRun("r")).toEqual(failed);
        const resumed = store.updateRunStatus("r", "running");
        expect(resumed).toMatchObject({ status: "running", finishedAt: null, error: null });
        expect(store.updateRunStatus("r", "finished", { finishedAt: "t2" }).status).toBe("finished");
        expect(store.updateRunStatus("r", "interrupted").status).toBe("interrupted");
      });

      it("updateRunStatus: STORE_NOT_FOUND for an unknown run, USAGE for a bad status", () => {
        expectStoreError(() => store.updateRunStatus("ghost", "finished"), "STORE_NOT_FOUND", /"ghost"/);
        store.createRun(newRun("r"));
        expectStoreError(() => store.updateRunStatus("r", "done" as "finished"), "USAGE", /status/);
        expect(store.getRun("r")?.status).toBe("running");
      });
    });

    describe("leases", () => {
      beforeEach(() => {
        store.createRun(newRun("r"));
      });

      it("claims a free run, and re-claiming one's own lease is a no-op", () => {
        expect(store.claimRun("r", process.pid)).toEqual({
          run: expect.objectContaining({ id: "r", ownerPid: process.pid }) as unknown,
          takenOverFrom: null,
        });
        expect(store.claimRun("r", process.pid).takenOverFrom).toBeNull();
        expect(store.getRun("r")?.ownerPid).toBe(process.pid);
      });

      it("refuses a claim on a run held by another live process, naming it", () => {
        store.claimRun("r", otherPid);
        const err = expectStoreError(() => store.claimRun("r", process.pid), "STORE_CONFLICT", new RegExp(`${otherPid}`));
        expect(err.details).toMatchObject({ runId: "r", ownerPid: otherPid, claimant: process.pid });
        expect(store.getRun("r")?.ownerPid).toBe(otherPid);
      });

      it("takes over a lease whose owner is dead", () => {
        const dead = deadPid();
        store.claimRun("r", dead);
        const { run, takenOverFrom } = store.claimRun("r", process.pid);
        expect(takenOverFrom).toBe(dead);
        expect(run.ownerPid).toBe(process.pid);
      });

      it("releases the owner's lease; releasing a free run is a no-op", () => {
        store.claimRun("r", process.pid);
        expect(store.releaseRun("r", process.pid).ownerPid).toBeNull();
        expect(store.getRun("r")?.ownerPid).toBeNull();
        expect(store.releaseRun("r", process.pid).ownerPid).toBeNull();
      });

      it("refuses a release by a process that does not hold the lease", () => {
        store.claimRun("r", otherPid);
        expectStoreError(() => store.releaseRun("r", process.pid), "STORE_CONFLICT", /held by process/);
        expect(store.getRun("r")?.ownerPid).toBe(otherPid);
      });

      it("claim/release: STORE_NOT_FOUND for unknown runs, USAGE for invalid pids", () => {
        expectStoreError(() => store.claimRun("ghost", process.pid), "STORE_NOT_FOUND", /"ghost"/);
        expectStoreError(() => store.releaseRun("ghost", process.pid), "STORE_NOT_FOUND", /"ghost"/);
        for (const pid of [0, -1, 1.5, Number.NaN]) {
          expectStoreError(() => store.claimRun("r", pid), "USAGE", /pid/);
          expectStoreError(() => store.releaseRun("r", pid), "USAGE", /pid/);
        }
        expect(store.getRun("r")?.ownerPid).toBeNull();
      });

      it("refuses writes to a run held by another live process", () => {
        store.claimRun("r", otherPid);
        expectStoreError(() => store.updateRunStatus("r", "finished"), "STORE_CONFLICT", /cannot write/);
        expectStoreError(() => store.putRecords([record("r", "x")]), "STORE_CONFLICT", /cannot write/);
        expect(store.getRun("r")?.status).toBe("running");
        expect(store.getRecords({ runId: "r" })).toEqual([]);
      });

      it("allows writes by the holder and to runs whose holder died", () => {
        store.claimRun("r", process.pid);
        store.putRecords([record("r", "mine")]);
        expect(store.updateRunStatus("r", "finished").status).toBe("finished");
        store.createRun(newRun("orphan"));
        store.claimRun("orphan", deadPid());
        store.putRecords([record("orphan", "x")]);
        expect(store.getRecord("orphan", "x")).toBeDefined();
      });
    });

    describe("batch_jobs", () => {
      const job = (id: string, overrides: Partial<BatchJob> = {}): BatchJob => ({
        id,
        provider: "openai-compatible",
        endpoint: "https://api.example/v1",
        externalId: null,
        inputRef: "file-1",
        customIds: ["a", "b"],
        status: "uploaded",
        createdAt: "2026-01-01T00:00:00.000Z",
        updatedAt: "2026-01-01T00:00:00.000Z",
        ...overrides,
      });

      it("keeps jobs per provider, newest first, and updates a job in place", () => {
        expect(store.listBatchJobs("openai-compatible")).toEqual([]);
        store.putBatchJob(job("j1"));
        store.putBatchJob(job("j2", { provider: "anthropic", customIds: ["c"] }));
        store.putBatchJob(job("j3", { customIds: ["d"] }));
        expect(store.listBatchJobs("openai-compatible").map((j) => j.id)).toEqual(["j3", "j1"]);
        store.putBatchJob(job("j1", { externalId: "batch_9", status: "submitted", updatedAt: "2026-01-02T00:00:00.000Z", createdAt: "ignored" }));
        expect(store.listBatchJobs("openai-compatible").find((j) => j.id === "j1")).toEqual(
          job("j1", { externalId: "batch_9", status: "submitted", updatedAt: "2026-01-02T00:00:00.000Z" }),
        );
        expect(store.listBatchJobs("anthropic")).toEqual([job("j2", { provider: "anthropic", customIds: ["c"] })]);
      });

      it("refuses an invalid job with USAGE", () => {
        expectStoreError(() => store.putBatchJob({ ...job("x"), status: "lost" as BatchJob["status"] }), "USAGE", /status/);
      });
    });

    describe("llm_calls", () => {
      it("returns undefined for an unknown key and round-trips a call", () => {
        expect(store.getCall("f".repeat(64))).toBeUndefined();
        const call = callRecord(1, { runId: "r", role: "judge", latencyMs: 12.5 });
        store.putCall(call);
        expect(store.getCall(call.key)).toEqual(call);
      });

      it("returns the newest call for a repeated key", () => {
        store.putCall(callRecord(7, { response: JSON.stringify({ text: "old" }) }));
        store.putCall(callRecord(7, { response: JSON.stringify({ text: "new" }) }));
        expect(store.getCall(callRecord(7).key)?.response).toBe(JSON.stringify({ text: "new" }));
      });

      it("rejects invalid call records with USAGE", () => {
        expectStoreError(() => store.putCall(callRecord(1, { key: "short" })), "USAGE", /key/);
        expectStoreError(() => store.putCall(callRecord(1, { promptTokens: -1 })), "USAGE", /promptTokens/);
        expectStoreError(() => store.putCall(callRecord(1, { response: "{oops" })), "USAGE", /response/);
        expect(store.getCall(callRecord(1).key)).toBeUndefined();
      });

      it("sums calls, tokens, latency and cost per provider, model and kind, optionally per run", () => {
        expect(store.callStats()).toEqual({
          total: { calls: 0, promptTokens: 0, completionTokens: 0, latencyMs: 0, costUsd: 0 },
          groups: [],
        });
        store.putCall(callRecord(1, { runId: "a", modelId: "m2" }));
        store.putCall(callRecord(2, { runId: "a", modelId: "m1", promptTokens: 3, completionTokens: 4, latencyMs: 50 }));
        store.putCall(callRecord(3, { runId: "b", modelId: "m1", promptTokens: 7, completionTokens: 1, latencyMs: 25 }));
        store.putCall(callRecord(4, { runId: null, modelId: "m1", kind: "embed", completionTokens: 0 }));
        store.putCall(callRecord(5, { runId: "a", provider: "openai", modelId: "gpt", kind: "generateObject", costUsd: 0.25, cachedPromptTokens: 4 }));

        const all = store.callStats();
        expect(all.total).toEqual({ calls: 5, promptTokens: 40, completionTokens: 15, latencyMs: 375, costUsd: 0.25 });
        expect(all.groups).toEqual([
          { provider: "llama-cpp", modelId: "m1", kind: "embed", calls: 1, promptTokens: 10, completionTokens: 0, latencyMs: 100, costUsd: 0 },
          { provider: "llama-cpp", modelId: "m1", kind: "generate", calls: 2, promptTokens: 10, completionTokens: 5, latencyMs: 75, costUsd: 0 },
          { provider: "llama-cpp", modelId: "m2", kind: "generate", calls: 1, promptTokens: 10, completionTokens: 5, latencyMs: 100, costUsd: 0 },
          { provider: "openai", modelId: "gpt", kind: "generateObject", calls: 1, promptTokens: 10, completionTokens: 5, latencyMs: 100, costUsd: 0.25 },
        ]);
        expect(store.getCall(callRecord(5).key)).toMatchObject({ costUsd: 0.25, cachedPromptTokens: 4 });

        const runA = store.callStats({ runId: "a" });
        expect(runA.total).toEqual({ calls: 3, promptTokens: 23, completionTokens: 14, latencyMs: 250, costUsd: 0.25 });
        expect(runA.groups.map((g) => `${g.provider}/${g.modelId}/${g.kind}`)).toEqual([
          "llama-cpp/m1/generate",
          "llama-cpp/m2/generate",
          "openai/gpt/generateObject",
        ]);
        expect(store.callStats({ runId: "none" }).groups).toEqual([]);
      });
    });

    describe("records", () => {
      beforeEach(() => {
        store.createRun(newRun("r"));
        store.createRun(newRun("s"));
      });

      it("stores a batch and reads it back in insertion order", () => {
        const rows = [
          record("r", "z", { parentIds: ["p1", "p2"] }),
          record("r", "a", { iteration: null, model: null, promptHash: null, payload: "plain string" }),
          record("r", "m", { status: "error", payload: null }),
        ];
        store.putRecords(rows);
        expect(store.getRecords({ runId: "r" })).toEqual(rows);
        expect(store.getRecord("r", "a")).toEqual(rows[1]);
      });

      it("returns undefined / empty for missing records and runs", () => {
        expect(store.getRecord("r", "missing")).toBeUndefined();
        expect(store.getRecord("ghost", "x")).toBeUndefined();
        expect(store.getRecords({ runId: "ghost" })).toEqual([]);
        store.putRecords([]);
        expect(store.getRecords({ runId: "r" })).toEqual([]);
      });

      it("filters by stage, iteration (including null) and status", () => {
        store.putRecords([
          record("r", "1", { stage: "redteam", iteration: 0 }),
          record("r", "2", { stage: "judge", iteration: 0, status: "error" }),
          record("r", "3", { stage: "redteam", iteration: 1 }),
          record("r", "4", { stage: "judge", iteration: null }),
          record("s", "1", { stage: "redteam", iteration: 0 }),
        ]);
        const ids = (q: Parameters<RunStore["getRecords"]>[0]): string[] => store.getRecords(q).map((r) => r.id);
        expect(ids({ runId: "r", stage: "redteam" })).toEqual(["1", "3"]);
        expect(ids({ runId: "r", iteration: 0 })).toEqual(["1", "2"]);
        expect(ids({ runId: "r", iteration: null })).toEqual(["4"]);
        expect(ids({ runId: "r", iteration: undefined })).toEqual(["1", "2", "3", "4"]);
        expect(ids({ runId: "r", status: "error" })).toEqual(["2"]);
        expect(ids({ runId: "r", stage: "judge", iteration: 0, status: "ok" })).toEqual([]);
        expect(ids({ runId: "s" })).toEqual(["1"]);
      });

      it("refuses a taken (runId, id) with STORE_CONFLICT and writes nothing of that batch", () => {
        store.putRecords([record("r", "x")]);
        const err = expectStoreError(
          () => store.putRecords([record("r", "new"), record("r", "x")]),
          "STORE_CONFLICT",
          /"x".*"r"/,
        );
        expect(err.details).toMatchObject({ runId: "r", id: "x" });
        expect(store.getRecords({ runId: "r" }).map((r) => r.id)).toEqual(["x"]);
      });

      it("refuses duplicates inside one batch, but allows the same id in another run", () => {
        expectStoreError(() => store.putRecords([record("r", "d"), record("r", "d")]), "STORE_CONFLICT", /"d"/);
        expect(store.getRecords({ runId: "r" })).toEqual([]);
        store.putRecords([record("r", "d"), record("s", "d")]);
        expect(store.getRecord("s", "d")?.runId).toBe("s");
      });

      it("refuses records of an unknown run with STORE_NOT_FOUND, atomically", () => {
        expectStoreError(() => store.putRecords([record("r", "ok"), record("ghost", "x")]), "STORE_NOT_FOUND", /"ghost"/);
        expect(store.getRecords({ runId: "r" })).toEqual([]);
      });

      it("rejects invalid records and queries with USAGE", () => {
        const bad: RecordRow[] = [
          record("r", "u", { payload: undefined }),
          record("r", "n", { payload: { x: Number.NaN } }),
          record("r", "f", { payload: { f: () => 1 } }),
          record("r", "i", { iteration: 1.5 }),
          record("r", "s", { status: "maybe" as "ok" }),
          record("r", "p", { parentIds: [""] }),
        ];
        for (const row of bad) expectStoreError(() => store.putRecords([row]), "USAGE", /record r\//);
        expect(store.getRecords({ runId: "r" })).toEqual([]);
        expectStoreError(() => store.getRecords({ runId: "r", iteration: -1 }), "USAGE", /iteration/);
      });

      it("copies payloads in and out, so callers cannot mutate stored rows", () => {
        const row = record("r", "c", { payload: { list: [1, 2] } });
        store.putRecords([row]);
        (row.payload as { list: number[] }).list.push(3);
        const read = store.getRecord("r", "c");
        expect(read?.payload).toEqual({ list: [1, 2] });
        (read?.payload as { list: number[] }).list.push(4);
        read?.parentIds.push("zzz");
        expect(store.getRecord("r", "c")).toMatchObject({ payload: { list: [1, 2] }, parentIds: [] });
      });

      it("types payloads with a schema, and reports a mismatch as STORE_CORRUPT", () => {
        store.putRecords([record("r", "t", { payload: { score: 3, label: "safe" } })]);
        const Judgement = z.object({ score: z.number(), label: z.string() });
        const typed = store.getRecords({ runId: "r" }, { payload: Judgement });
        expect(typed[0]?.payload.score).toBe(3);
        expect(store.getRecord("r", "t", { payload: Judgement })?.payload.label).toBe("safe");
        const Other = z.object({ prompt: z.string() });
        expectStoreError(() => store.getRecords({ runId: "r" }, { payload: Other }), "STORE_CORRUPT", /records.*r\/t/);
        expectStoreError(() => store.getRecord("r", "t", { payload: Other }), "STORE_CORRUPT", /payload/);
      });

      it("reads records by id in the order asked, skipping missing ones", () => {
        const rows = ["a", "b", "c"].map((id) => record("r", id));
        store.putRecords(rows);
        store.putRecords([record("s", "b")]);
        expect(store.getRecordsByIds("r", ["c", "missing", "a"])).toEqual([rows[2], rows[0]]);
        expect(store.getRecordsByIds("r", [])).toEqual([]);
      });

      it("reads fields of the records of some stages in insertion order, with their JSON types", () => {
        store.putRecords([
          record("r", "v1", { stage: "judge", payload: { record: { verdict: { pass: false, severity: "high" }, n: 2 } } }),
          record("r", "x", { stage: "other", payload: { record: { verdict: { pass: true } } } }),
          record("r", "v2", { stage: "judge", iteration: 1, status: "error", payload: { status: "error", error: { code: "X" } } }),
          record("r", "g1", { stage: "gate", iteration: null, payload: { record: { accepted: true, reason: null } } }),
        ]);
        const rows = store.recordFields({ runId: "r", stages: ["judge", "gate"], fields: { pass: "$.record.verdict.pass", code: "$.error.code", reason: "$.record.reason" } });
        expect(rows).toEqual([
          { id: "v1", stage: "judge", iteration: 0, status: "ok", values: { pass: false, code: null, reason: null } },
          { id: "v2", stage: "judge", iteration: 1, status: "error", values: { pass: null, code: "X", reason: null } },
          { id: "g1", stage: "gate", iteration: null, status: "ok", values: { pass: null, code: null, reason: null } },
        ]);
        expect(store.recordFields({ runId: "r", stages: [], fields: { a: "$.a" } })).toEqual([]);
        store.putRecords([record("r", "t1", { stage: "text", payload: { record: { prompt: "é".repeat(10) + "<script>" } } }), record("r", "t2", { stage: "text", payload: { record: {} } })]);
        expect(store.recordFields({ runId: "r", stages: ["text"], fields: { start: { path: "$.record.prompt", maxChars: 12 } } }).map((r) => r.values.start)).toEqual([
          `${"é".repeat(10)}<s`,
          null,
        ]);
        expectStoreError(() => store.recordFields({ runId: "r", stages: ["judge"], fields: { bad: "$.a'); DROP TABLE records; --" } }), "USAGE", /not a dotted JSON path/);
      });

      it("indexes red-team items as their records are written, retried and removed, and filters and pages them", () => {
        const att = (it: number, p: string, extra: Record<string, unknown> = {}, status: "ok" | "error" = "ok"): RecordRow =>
          record("r", `it${it}:attempt:${p}`, { stage: "red-team", iteration: it, status, payload: status === "ok" ? { status, record: { promptId: p, prompt: `Prompt about ${p} 100%_done`, ...extra } } : { status, error: { code: "X", message: "m" } } });
        const rec = (it: number, kind: string, stage: string, p: string, body: Record<string, unknown>, status: "ok" | "error" = "ok"): RecordRow =>
          record("r", `it${it}:${kind}:${p}`, { stage, iteration: it, status, payload: status === "ok" ? { status, record: body } : { status, error: { code: "X", message: "m" } } });
        store.putRecords([att(0, "ds:a", { category: "weapons" }), att(0, "ds:b"), att(0, "other:c"), att(1, "ds:a"), att(1, "ds:d", {}, "error")]);
        store.putRecords([
          rec(0, "verdict", "judge", "ds:a", { verdict: { pass: false } }),
          rec(0, "verdict", "judge", "ds:b", { verdict: { pass: true } }),
          rec(0, "verdict", "judge", "other:c", {}, "error"),
          rec(1, "verdict", "judge", "ds:a", { verdict: { pass: false } }),
          rec(0, "revision", "self-correct", "ds:a", { principleIds: ["p1", "p2"] }),
          rec(1, "revision", "self-correct", "ds:a", {}, "error"),
          rec(0, "gate", "gate-decision", "ds:a", { accepted: true, reason: "pass" }),
          // Records outside items are not indexed.
          record("r", "it0:done:judge", { stage: "marker", iteration: 0 }),
        ]);
        const all = store.queryItems("r", {}, { offset: 0, limit: 100 });
        expect(all.total).toBe(5);
        expect(all.rows.map((x) => [x.attemptId, x.stage, x.verdict, x.gate, x.errors])).toEqual([
          ["it0:attempt:ds:a", "exported", "fail", "accepted", 0],
          ["it0:attempt:ds:b", "judge", "pass", null, 0],
          ["it0:attempt:other:c", "judge", "error", null, 1],
          ["it1:attempt:ds:a", "self-correct", "fail", null, 1],
          ["it1:attempt:ds:d", "red-team", null, null, 1],
        ]);
        expect(all.rows[0]).toMatchObject({ iteration: 0, promptId: "ds:a", dataset: "ds", category: "weapons", promptStart: "Prompt about ds:a 100%_done", revised: true, principleIds: ["p1", "p2"] });
        expect(all.rows[4]).toMatchObject({ promptId: "ds:d", dataset: "ds", promptStart: "" });
        const ids = (filter: Parameters<RunStore["queryItems"]>[1]): string[] => store.queryItems("r", filter, { offset: 0, limit: 100 }).rows.map((x) => x.attemptId);
        expect(ids({ iteration: 1 })).toEqual(["it1:attempt:ds:a", "it1:attempt:ds:d"]);
        expect(ids({ verdict: "none" })).toEqual(["it1:attempt:ds:d"]);
        expect(ids({ verdict: "fail", stage: "self-correct" })).toEqual(["it1:attempt:ds:a"]);
        expect(ids({ dataset: "other" })).toEqual(["it0:attempt:other:c"]);
        expect(ids({ category: "weapons" })).toEqual(["it0:attempt:ds:a"]);
        expect(ids({ errors: true })).toHaveLength(3);
        expect(ids({ revised: true })).toEqual(["it0:attempt:ds:a", "it1:attempt:ds:a"]);
        expect(ids({ gate: "accepted" })).toEqual(["it0:attempt:ds:a"]);
        expect(ids({ principle: { id: "p2", evidence: ["it0:attempt:ds:b"] } })).toEqual(["it0:attempt:ds:a", "it0:attempt:ds:b"]);
        // LIKE's wildcards in the search text are literal.
        expect(ids({ text: "100%_D" })).toHaveLength(4);
        expect(ids({ text: "1%0" })).toEqual([]);
        expect(ids({ text: "IT1:ATTEMPT" })).toEqual(["it1:attempt:ds:a", "it1:attempt:ds:d"]);
        expect(ids({ id: "it0:attempt:ds:b" })).toEqual(["it0:attempt:ds:b"]);
        const page = store.queryItems("r", { iteration: 0 }, { offset: 1, limit: 1 });
        expect([page.total, page.rows.map((x) => x.attemptId)]).toEqual([3, ["it0:attempt:ds:b"]]);
        expect(store.itemFacets("r")).toEqual({ iterations: [0, 1], datasets: ["ds", "other"], categories: ["weapons"], gates: ["accepted"] });
        expect(store.principleUse("r")).toEqual([
          { principleId: "p1", revised: 1, accepted: 1 },
          { principleId: "p2", revised: 1, accepted: 1 },
        ]);
        expect(store.queryItems("s", {}, { offset: 0, limit: 10 }).total).toBe(0);

        // A retried stage: the error row is replaced by its result.
        store.replaceRecords("r", ["it1:revision:ds:a"], [rec(1, "revision", "self-correct", "ds:a", { principleIds: ["p3"] })]);
        expect(store.queryItems("r", { iteration: 1, revised: true }, { offset: 0, limit: 10 }).rows[0]).toMatchObject({ errors: 0, principleIds: ["p3"], stage: "self-correct" });
        // A discarded stage: its records are gone from the items.
        store.replaceRecords("r", ["it0:gate:ds:a"], []);
        expect(ids({ gate: "accepted" })).toEqual([]);
        expect(store.queryItems("r", { id: "it0:attempt:ds:a" }, { offset: 0, limit: 1 }).rows[0]?.stage).toBe("self-correct");
        store.replaceRecords("r", ["it1:attempt:ds:d"], []);
        expect(store.queryItems("r", {}, { offset: 0, limit: 100 }).total).toBe(4);
      });

      it("changes the records revision on every write to the run, and only to that run", () => {
        const r0 = store.recordsRevision("r");
        const s0 = store.recordsRevision("s");
        store.putRecords([record("r", "a")]);
        const r1 = store.recordsRevision("r");
        expect(r1).not.toBe(r0);
        store.replaceRecords("r", ["a"], [record("r", "a", { payload: "again" })]);
        expect(store.recordsRevision("r")).not.toBe(r1);
        expect(store.recordsRevision("s")).toBe(s0);
      });
    });

    describe("close", () => {
      it("refuses use after close with USAGE, and closing twice is harmless", () => {
        store.createRun(newRun("r"));
        store.close();
        store.close();
        const calls: Array<() => unknown> = [
          () => store.createRun(newRun("x")),
          () => store.getRun("r"),
          () => store.listRuns(),
          () => store.updateRunStatus("r", "finished"),
          () => store.claimRun("r", process.pid),
          () => store.releaseRun("r", process.pid),
          () => store.getCall(callRecord(1).key),
          () => store.putCall(callRecord(1)),
          () => store.callStats(),
          () => store.putRecords([record("r", "x")]),
          () => store.getRecords({ runId: "r" }),
          () => store.getRecord("r", "x"),
        ];
        for (const call of calls) expectStoreError(call, "USAGE", /closed/);
      });
    });
  });
}
