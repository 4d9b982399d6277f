import type { Migration } from "./index.js";

/**
 * Initial schema. Tables are STRICT so a wrongly typed value fails at insert instead of being
 * coerced. `seq` gives every table a stable insertion order that listings follow.
 */
export const migration: Migration = {
  version: 1,
  name: "initial",
  sql: `
CREATE TABLE runs (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  config_json TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  created_at TEXT NOT NULL,
  finished_at TEXT,
  error TEXT,
  owner_pid INTEGER
) STRICT;

-- No foreign key to runs: the call log doubles as a response cache that may be shared by, and
-- outlive, the runs that filled it. No CHECK on kind either, so a new call kind needs no migration.
CREATE TABLE llm_calls (
  seq INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  provider TEXT NOT NULL,
  model_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  request TEXT NOT NULL,
  response TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  latency_ms REAL NOT NULL,
  created_at TEXT NOT NULL,
  run_id TEXT,
  role TEXT
) STRICT;
CREATE INDEX llm_calls_by_key ON llm_calls (key);
CREATE INDEX llm_calls_by_run ON llm_calls (run_id);

CREATE TABLE records (
  seq INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL REFERENCES runs (id),
  id TEXT NOT NULL,
  stage TEXT NOT NULL,
  iteration INTEGER,
  kind TEXT NOT NULL,
  parent_ids TEXT NOT NULL,
  model TEXT,
  prompt_hash TEXT,
  status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (run_id, id)
) STRICT;
CREATE INDEX records_by_stage ON records (run_id, stage, iteration);
`,
};
