import type { Migration } from "./index.js";

/** Batch jobs of model calls, so a restarted run polls the job it already paid for. */
export const migration: Migration = {
  version: 3,
  name: "batch-jobs",
  sql: `
CREATE TABLE batch_jobs (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  provider TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  external_id TEXT,
  input_ref TEXT,
  custom_ids TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('uploaded', 'submitted', 'ended')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX batch_jobs_by_provider ON batch_jobs (provider);
`,
};
