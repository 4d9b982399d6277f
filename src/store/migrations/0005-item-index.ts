import type { Migration } from "./index.js";

/** The stages whose records make up a red-team item (stages/ids.ts names their ids `it<n>:<kind>:<prompt id>`). */
const ITEM_STAGES = "('red-team', 'judge', 'self-correct', 'gate', 'gate-decision')";

/** `it<n>:<kind>:<prompt id>` → the prompt id. */
const promptIdOf = (id: string): string => `substr(substr(${id}, instr(${id}, ':') + 1), instr(substr(${id}, instr(${id}, ':') + 1), ':') + 1)`;

/** The item a record belongs to: `<iteration>:<prompt id>`. */
const keyOf = (row: "NEW" | "OLD"): string => `${row}.iteration || ':' || ${promptIdOf(`${row}.id`)}`;

/**
 * One row per red-team item (an iteration's attempt at one prompt) with what each stage made of it, kept by triggers
 * on `records`: the report's item browser pages and filters it with SQL instead of reading every payload (a
 * 100,000-item run answers its first page in milliseconds). Payload fields are parsed once, when a record is written.
 * Existing records are indexed by re-inserting them (same rows, same seq) so the triggers see them.
 */
export const migration: Migration = {
  version: 5,
  name: "item-index",
  sql: `
CREATE TABLE item_index (
  run_id TEXT NOT NULL,
  item_key TEXT NOT NULL,
  iteration INTEGER NOT NULL,
  attempt_id TEXT,
  attempt_seq INTEGER,
  prompt_id TEXT,
  category TEXT,
  prompt_start TEXT,
  verdict TEXT,
  revised INTEGER NOT NULL DEFAULT 0,
  principle_ids TEXT,
  gate TEXT,
  errors INTEGER NOT NULL DEFAULT 0,
  dataset TEXT GENERATED ALWAYS AS (CASE WHEN instr(prompt_id, ':') > 0 THEN substr(prompt_id, 1, instr(prompt_id, ':') - 1) ELSE prompt_id END) VIRTUAL,
  stage TEXT GENERATED ALWAYS AS (
    CASE WHEN gate = 'accepted' THEN 'exported' WHEN gate IS NOT NULL THEN 'gate' WHEN revised = 1 THEN 'self-correct'
         WHEN verdict IS NOT NULL THEN 'judge' ELSE 'red-team' END) VIRTUAL,
  PRIMARY KEY (run_id, item_key)
) STRICT;
CREATE INDEX item_index_by_seq ON item_index (run_id, attempt_seq);
CREATE INDEX item_index_by_iteration ON item_index (run_id, iteration, attempt_seq);

CREATE TRIGGER item_index_insert AFTER INSERT ON records
WHEN NEW.stage IN ${ITEM_STAGES} AND NEW.iteration IS NOT NULL
BEGIN
  INSERT INTO item_index (run_id, item_key, iteration) VALUES (NEW.run_id, ${keyOf("NEW")}, NEW.iteration)
    ON CONFLICT (run_id, item_key) DO NOTHING;
  UPDATE item_index SET
    attempt_id = CASE WHEN NEW.stage = 'red-team' THEN NEW.id ELSE attempt_id END,
    attempt_seq = CASE WHEN NEW.stage = 'red-team' THEN NEW.seq ELSE attempt_seq END,
    prompt_id = CASE WHEN NEW.stage = 'red-team' THEN coalesce(NEW.payload ->> '$.record.promptId', ${promptIdOf("NEW.id")}) ELSE prompt_id END,
    category = CASE WHEN NEW.stage = 'red-team' THEN NEW.payload ->> '$.record.category' ELSE category END,
    prompt_start = CASE WHEN NEW.stage = 'red-team' THEN substr(NEW.payload ->> '$.record.prompt', 1, 200) ELSE prompt_start END,
    verdict = CASE WHEN NEW.stage = 'judge' THEN
        (CASE WHEN NEW.status = 'error' THEN 'error' WHEN NEW.payload ->> '$.record.verdict.pass' THEN 'pass' ELSE 'fail' END)
      ELSE verdict END,
    revised = CASE WHEN NEW.stage = 'self-correct' THEN 1 ELSE revised END,
    principle_ids = CASE WHEN NEW.stage = 'self-correct' AND NEW.status = 'ok' THEN NEW.payload -> '$.record.principleIds' ELSE principle_ids END,
    gate = CASE WHEN NEW.stage = 'gate-decision' THEN
        (CASE WHEN NEW.payload ->> '$.record.accepted' THEN 'accepted' ELSE coalesce(NEW.payload ->> '$.record.reason', 'rejected') END)
      ELSE gate END,
    errors = errors + (NEW.status = 'error')
  WHERE run_id = NEW.run_id AND item_key = ${keyOf("NEW")};
END;

CREATE TRIGGER item_index_delete AFTER DELETE ON records
WHEN OLD.stage IN ${ITEM_STAGES} AND OLD.iteration IS NOT NULL
BEGIN
  UPDATE item_index SET
    attempt_id = CASE WHEN OLD.stage = 'red-team' THEN NULL ELSE attempt_id END,
    attempt_seq = CASE WHEN OLD.stage = 'red-team' THEN NULL ELSE attempt_seq END,
    verdict = CASE WHEN OLD.stage = 'judge' THEN NULL ELSE verdict END,
    revised = CASE WHEN OLD.stage = 'self-correct' THEN 0 ELSE revised END,
    principle_ids = CASE WHEN OLD.stage = 'self-correct' THEN NULL ELSE principle_ids END,
    gate = CASE WHEN OLD.stage = 'gate-decision' THEN NULL ELSE gate END,
    errors = errors - (OLD.status = 'error')
  WHERE run_id = OLD.run_id AND item_key = ${keyOf("OLD")};
  DELETE FROM item_index WHERE run_id = OLD.run_id AND item_key = ${keyOf("OLD")}
    AND attempt_id IS NULL AND verdict IS NULL AND revised = 0 AND gate IS NULL AND errors = 0;
END;

CREATE TEMP TABLE item_index_backfill AS SELECT * FROM records WHERE stage IN ${ITEM_STAGES} AND iteration IS NOT NULL;
DELETE FROM records WHERE seq IN (SELECT seq FROM item_index_backfill);
INSERT INTO records SELECT * FROM item_index_backfill ORDER BY seq;
DROP TABLE item_index_backfill;
`,
};
