import type { Migration } from "./index.js";

/**
 * A counter per run that every insert or delete of one of its records bumps (by trigger, so every writer keeps it
 * right): how a viewer notices that a running run moved on without re-reading its records. Row ids alone cannot
 * tell, since SQLite reuses the largest rowid after a delete.
 */
export const migration: Migration = {
  version: 4,
  name: "record-revisions",
  sql: `
CREATE TABLE record_revisions (
  run_id TEXT PRIMARY KEY,
  revision INTEGER NOT NULL
) STRICT;
INSERT INTO record_revisions (run_id, revision) SELECT run_id, COUNT(*) FROM records GROUP BY run_id;
CREATE TRIGGER records_revision_insert AFTER INSERT ON records BEGIN
  INSERT INTO record_revisions (run_id, revision) VALUES (NEW.run_id, 1)
    ON CONFLICT (run_id) DO UPDATE SET revision = revision + 1;
END;
CREATE TRIGGER records_revision_delete AFTER DELETE ON records BEGIN
  UPDATE record_revisions SET revision = revision + 1 WHERE run_id = OLD.run_id;
END;
`,
};
