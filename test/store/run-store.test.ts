import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { LATEST_SCHEMA_VERSION, migrations } from "../../src/store/migrations/index.js";
import { SqliteRunStore, translateSqliteError } from "../../src/store/sqlite-run-store.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { callRecord, deadPid, expectStoreError, newRun, record, runStoreContract } from "./run-store-contract.js";

const tempRoot = mkdtempSync(join(tmpdir(), "iteralign-store-"));
let fileCounter = 0;

/** A fresh database path in a not-yet-existing subdirectory, so parent creation is exercised too. */
function freshPath(): string {
  fileCounter += 1;
  return join(tempRoot, `case-${fileCounter}`, "nested", "runs.db");
}

afterAll(() => {
  rmSync(tempRoot, { recursive: true, force: true });
});

runStoreContract("SqliteRunStore (file)", () => new SqliteRunStore(freshPath()));
runStoreContract("SqliteRunStore (:memory:)", () => new SqliteRunStore(":memory:"));
runStoreContract("MemoryRunStore", () => new MemoryRunStore());

/** Runs `fn` on a raw connection to `path`, bypassing the store's checks. */
function withRawDb<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describe("SqliteRunStore specifics", () => {
  it("records migrations once and reapplies nothing on reopen", () => {
    const path = freshPath();
    const first = new SqliteRunStore(path);
    expect(first.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    first.close();
    new SqliteRunStore(path).close();
    const applied = withRawDb(path, (db) => db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all());
    expect(applied).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1));
  });

  it("indexes the items of records written before the item index existed (migration 5 backfills them)", () => {
    const path = freshPath();
    const store = new SqliteRunStore(path);
    store.createRun(newRun("r"));
    store.putRecords([
      record("r", "it0:attempt:ds:a", { stage: "red-team", payload: { status: "ok", record: { promptId: "ds:a", prompt: "old prompt" } } }),
      record("r", "it0:verdict:ds:a", { stage: "judge", payload: { status: "ok", record: { verdict: { pass: false } } } }),
      record("r", "other", { stage: "marker" }),
    ]);
    store.close();
    // Back to schema 4, as a store from before this version: no index, no triggers.
    const db = new Database(path);
    db.exec("DROP TRIGGER item_index_insert; DROP TRIGGER item_index_delete; DROP TABLE item_index; DELETE FROM schema_migrations WHERE version >= 5");
    db.close();
    const reopened = new SqliteRunStore(path);
    try {
      expect(reopened.queryItems("r", {}, { offset: 0, limit: 10 }).rows.map((x) => [x.attemptId, x.promptStart, x.verdict, x.stage])).toEqual([["it0:attempt:ds:a", "old prompt", "fail", "judge"]]);
      // The records themselves are unchanged, in their order.
      expect(reopened.getRecords({ runId: "r" }).map((x) => x.id)).toEqual(["it0:attempt:ds:a", "it0:verdict:ds:a", "other"]);
    } finally {
      reopened.close();
    }
  });

  it("answers the facets and the principle counts from partial indexes, not by scanning the item rows", () => {
    const path = freshPath();
    new SqliteRunStore(path).close();
    const db = new Database(path, { readonly: true });
    try {
      const plan = (sql: string): string => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all("r") as Array<{ detail: string }>).map((r) => r.detail).join("; ");
      for (const [column, index] of [["iteration", "item_index_iterations"], ["dataset", "item_index_datasets"], ["category", "item_index_categories"], ["gate", "item_index_gates"]]) {
        expect(plan(`SELECT DISTINCT ${column} AS v FROM item_index WHERE run_id = ? AND attempt_id IS NOT NULL AND ${column} IS NOT NULL ORDER BY v`)).toMatch(new RegExp(`USING (COVERING )?INDEX ${index}\\b`));
      }
      expect(plan("SELECT principle_ids, COUNT(*), SUM(gate = 'accepted') FROM item_index WHERE run_id = ? AND revised = 1 AND attempt_id IS NOT NULL AND principle_ids IS NOT NULL GROUP BY principle_ids")).toMatch(/USING (COVERING )?INDEX item_index_principles\b/);
      expect(plan("SELECT attempt_id FROM item_index WHERE run_id = ? AND attempt_id IS NOT NULL AND verdict = 'fail' ORDER BY attempt_seq LIMIT 50 OFFSET 100")).toMatch(
        /USING (COVERING )?INDEX item_index_verdicts \(run_id=\? AND verdict=\?\)/,
      );
    } finally {
      db.close();
    }
  });

  it("keeps runs, calls and records across close and reopen", () => {
    const path = freshPath();
    const a = new SqliteRunStore(path);
    a.createRun(newRun("r"));
    a.claimRun("r", process.pid);
    a.updateRunStatus("r", "finished", { finishedAt: "2025-01-03T00:00:00Z" });
    a.putCall(callRecord(1, { runId: "r" }));
    const rows = [record("r", "1"), record("r", "2", { parentIds: ["1"] })];
    a.putRecords(rows);
    const runBefore = a.getRun("r");
    a.close();

    const b = new SqliteRunStore(path);
    expect(b.getRun("r")).toEqual(runBefore);
    expect(b.getRun("r")).toMatchObject({ status: "finished", ownerPid: process.pid });
    expect(b.getCall(callRecord(1).key)).toEqual(callRecord(1, { runId: "r" }));
    expect(b.callStats({ runId: "r" }).total.calls).toBe(1);
    expect(b.getRecords({ runId: "r" })).toEqual(rows);
    b.close();
  });

  it("turns on WAL, and the file is not left in a rollback-journal mode", () => {
    const path = freshPath();
    const store = new SqliteRunStore(path);
    expect(withRawDb(path, (db) => db.pragma("journal_mode", { simple: true }))).toBe("wal");
    store.close();
  });

  it("enforces the records -> runs foreign key at the SQL level too", () => {
    const path = freshPath();
    new SqliteRunStore(path).close();
    // The store checks runs itself; this proves the schema would also catch a bypass.
    withRawDb(path, (db) => {
      db.pragma("foreign_keys = ON");
      expect(() =>
        db
          .prepare(
            `INSERT INTO records (run_id, id, stage, iteration, kind, parent_ids, model, prompt_hash, status, payload,
               created_at) VALUES ('ghost', 'x', 's', 0, 'k', '[]', NULL, NULL, 'ok', '{}', 't')`,
          )
          .run(),
      ).toThrow(/FOREIGN KEY/);
    });
  });

  it("refuses a database whose schema is newer than the code, with a clear message", () => {
    const path = freshPath();
    new SqliteRunStore(path).close();
    withRawDb(path, (db) => {
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(99, "future", "t");
    });
    const err = expectStoreError(() => new SqliteRunStore(path), "STORE_CONFLICT", /schema version 99.*newer.*upgrade/);
    expect(err.details).toMatchObject({ version: 99, supported: LATEST_SCHEMA_VERSION });
  });

  it("refuses a database whose migration history names a migration this code does not know", () => {
    const path = freshPath();
    new SqliteRunStore(path).close();
    withRawDb(path, (db) => db.prepare("UPDATE schema_migrations SET name = ? WHERE version = 1").run("other"));
    expectStoreError(() => new SqliteRunStore(path), "STORE_CORRUPT", /schema_migrations/);
  });

  it("reports a file that is not a database as STORE_CORRUPT", () => {
    const path = join(tempRoot, "not-a-db.db");
    writeFileSync(path, "this is not an sqlite database, just some text that is long enough to be a header".repeat(20));
    expectStoreError(() => new SqliteRunStore(path), "STORE_CORRUPT", /not-a-db\.db/);
  });

  it("raises STORE_CORRUPT naming table and key for rows with corrupt JSON", () => {
    const path = freshPath();
    const store = new SqliteRunStore(path);
    store.createRun(newRun("r"));
    store.putCall(callRecord(1));
    withRawDb(path, (db) => {
      db.prepare(
        `INSERT INTO records (run_id, id, stage, iteration, kind, parent_ids, model, prompt_hash, status, payload,
           created_at) VALUES (?, ?, 'redteam', 0, 'prompt', '[]', NULL, NULL, 'ok', ?, 't')`,
      ).run("r", "broken", "{oops");
      db.prepare(
        `INSERT INTO records (run_id, id, stage, iteration, kind, parent_ids, model, prompt_hash, status, payload,
           created_at) VALUES (?, ?, 'redteam', 0, 'prompt', ?, NULL, NULL, 'ok', '{}', 't')`,
      ).run("r", "badparents", "[1, 2]");
      db.prepare("UPDATE llm_calls SET response = ? WHERE key = ?").run("not json", callRecord(1).key);
    });
    expectStoreError(() => store.getRecords({ runId: "r" }), "STORE_CORRUPT", /records row r\/broken.*payload/);
    const err = expectStoreError(() => store.getRecord("r", "broken"), "STORE_CORRUPT", /records/);
    expect(err.details).toEqual({ table: "records", key: "r/broken" });
    expectStoreError(() => store.getRecord("r", "badparents"), "STORE_CORRUPT", /records row r\/badparents/);
    expectStoreError(() => store.getCall(callRecord(1).key), "STORE_CORRUPT", /llm_calls row 0+1.*response/);

    withRawDb(path, (db) => db.prepare("UPDATE runs SET config_json = ? WHERE id = ?").run("{", "r"));
    expectStoreError(() => store.getRun("r"), "STORE_CORRUPT", /runs row r.*config_json/);
    expectStoreError(() => store.listRuns(), "STORE_CORRUPT", /runs row r/);
    store.close();
  });

  describe("leases across processes", () => {
    const storeModule = pathToFileURL(fileURLToPath(new URL("../../src/store/sqlite-run-store.ts", import.meta.url))).href;
    // A separate Node process (TypeScript via tsx) that opens the same file and tries to claim the run.
    const childScript = `
      const { SqliteRunStore } = await import(${JSON.stringify(storeModule)});
      const [path, runId, mode] = process.argv.slice(-3);
      const store = new SqliteRunStore(path);
      try {
        store.claimRun(runId, process.pid);
        if (mode === "claim-and-write") store.putRecords([{ runId, id: "from-child", stage: "s", iteration: null,
          kind: "k", parentIds: [], model: null, promptHash: null, status: "ok", payload: {}, createdAt: "t" }]);
        console.log(JSON.stringify({ claimed: true, pid: process.pid }));
      } catch (err) {
        console.log(JSON.stringify({ claimed: false, code: err.code, message: err.message }));
      } finally {
        store.close();
      }`;

    function runChild(path: string, runId: string, mode: "claim" | "claim-and-write"): Record<string, unknown> {
      const result = spawnSync(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", childScript, "--", path, runId, mode],
        { encoding: "utf8", timeout: 60_000 },
      );
      expect(result.status, result.stderr).toBe(0);
      return JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "") as Record<string, unknown>;
    }

    it("a second process cannot claim a run held by this live process", () => {
      const path = freshPath();
      const store = new SqliteRunStore(path);
      store.createRun(newRun("r"));
      store.claimRun("r", process.pid);
      const outcome = runChild(path, "r", "claim");
      expect(outcome).toMatchObject({ claimed: false, code: "STORE_CONFLICT" });
      expect(String(outcome.message)).toContain(String(process.pid));
      expect(store.getRun("r")?.ownerPid).toBe(process.pid);
      store.close();
    });

    it("a lease left by a process that exited is taken over", () => {
      const path = freshPath();
      const store = new SqliteRunStore(path);
      store.createRun(newRun("r"));
      const outcome = runChild(path, "r", "claim-and-write");
      expect(outcome).toMatchObject({ claimed: true });
      const childPid = outcome.pid as number;
      expect(store.getRun("r")?.ownerPid).toBe(childPid);
      expect(store.getRecord("r", "from-child")).toBeDefined();
      expect(store.claimRun("r", process.pid)).toMatchObject({ takenOverFrom: childPid });
      store.close();
    });

    it("two connections see each other's leases (a fake dead pid is taken over)", () => {
      const path = freshPath();
      const a = new SqliteRunStore(path);
      const b = new SqliteRunStore(path);
      a.createRun(newRun("r"));
      const dead = deadPid();
      a.claimRun("r", dead);
      expect(b.claimRun("r", process.pid).takenOverFrom).toBe(dead);
      expect(a.getRun("r")?.ownerPid).toBe(process.pid);
      a.close();
      b.close();
    });
  });
});

describe("SqliteRunStore: SQLite's errors become typed ones that name the store", () => {
  /** A real SqliteError from better-sqlite3. */
  function sqliteError(run: (db: Database.Database) => void, path = freshPath()): unknown {
    new SqliteRunStore(path).close();
    const db = new Database(path);
    try {
      run(db);
    } catch (err) {
      return err;
    } finally {
      db.close();
    }
    throw new Error("expected SQLite to fail");
  }

  it("a full disk (SQLITE_FULL) is STORE_FULL with the path and what to do", () => {
    const err = translateSqliteError(
      sqliteError((db) => {
        db.pragma("max_page_count = 8");
        db.exec("CREATE TABLE filler (x BLOB)");
        for (let i = 0; i < 100; i++) db.prepare("INSERT INTO filler VALUES (?)").run(Buffer.alloc(4096));
      }),
      "/data/runs.db",
    ) as IterAlignError;
    expect(err.code).toBe("STORE_FULL");
    expect(err.message).toMatch(/^run store \/data\/runs\.db: database or disk is full \(SQLITE_FULL\); free disk space, then resume the run$/);
    expect(err.details).toEqual({ path: "/data/runs.db", sqliteCode: "SQLITE_FULL" });
  });

  it("a read-only database (SQLITE_READONLY) is STORE_READONLY", () => {
    const path = freshPath();
    new SqliteRunStore(path).close();
    const db = new Database(path, { readonly: true });
    let caughtError: unknown;
    try {
      db.prepare("DELETE FROM runs").run();
    } catch (err) {
      caughtError = err;
    } finally {
      db.close();
    }
    const err = translateSqliteError(caughtError, path) as IterAlignError;
    expect(err.code).toBe("STORE_READONLY");
    expect(err.message).toContain(`run store ${path} cannot be written`);
    expect(err.message).toContain("(SQLITE_READONLY)");
  });

  it("a malformed file (SQLITE_CORRUPT) is STORE_CORRUPT naming the file, when opened or read", () => {
    const path = freshPath();
    const store = new SqliteRunStore(path);
    store.createRun(newRun("r"));
    for (let i = 0; i < 200; i++) store.putCall(callRecord(i, { runId: "r" }));
    store.close();
    // Overwrite the middle of the file (table pages, not the header) with garbage.
    const fd = openSync(path, "r+");
    const size = statSync(path).size;
    writeSync(fd, Buffer.alloc(size / 2, 0xa5), 0, size / 2, Math.floor(size / 4));
    closeSync(fd);
    const err = caughtSync(() => {
      const damaged = new SqliteRunStore(path);
      try {
        damaged.callStats();
        damaged.listRuns();
      } finally {
        damaged.close();
      }
    }) as IterAlignError;
    expect(err).toBeInstanceOf(IterAlignError);
    expect(err.code).toBe("STORE_CORRUPT");
    expect(err.message).toContain(path);
    expect(err.details).toMatchObject({ path });
  });

  it("a store that cannot be opened (SQLITE_CANTOPEN) or whose folder cannot be made names the path", () => {
    const dir = freshPath();
    mkdirSync(dir, { recursive: true });
    // A directory where the database file should be.
    const cantOpen = caughtSync(() => new SqliteRunStore(dir)) as IterAlignError;
    expect(cantOpen.code).toBe("STORE_UNAVAILABLE");
    expect(cantOpen.message).toContain(dir);
    expect(cantOpen.message).toContain("SQLITE_CANTOPEN");
    // A file where its folder should be.
    const file = join(dir, "plain-file");
    writeFileSync(file, "x");
    const noDir = caughtSync(() => new SqliteRunStore(join(file, "runs.db"))) as IterAlignError;
    expect(noDir.code).toBe("STORE_UNAVAILABLE");
    expect(noDir.message).toBe(`cannot create the run store's directory ${file}: ${noDir.message.split(": ").slice(1).join(": ")}`);
    expect(noDir.message).toMatch(/EEXIST|ENOTDIR/);
  });
});

function caughtSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}
